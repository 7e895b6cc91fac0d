"""Terminal access tokens: short-lived EdDSA JWTs, algorithm pinned, claims cached.

One Ed25519 verification costs ~150 µs, so a token is verified once and its claims are kept
until it expires; the hot path then pays one dict lookup per request.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qrloop.codes.keyring import Algorithm, KeyRing, KeyStatus, Purpose
from qrloop.errors import Problem, Reason

ALGORITHM = "EdDSA"
AUDIENCE = "qrloop:terminal"
_CACHE_LIMIT = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TerminalClaims(msgspec.Struct, frozen=True):
    """Who is scanning: the terminal, its store and the store's merchant."""

    terminal_id: int
    store_id: int
    merchant_id: int
    expires_at: int
    # When the terminal secret this token was exchanged for was set (ms since the epoch; 0 for
    # a secret never rotated). A token whose value is older than the terminal's is refused.
    credentials_since_ms: int = 0
    # The paired phone (till/) the token was exchanged for, 0 for a terminal secret: a revoked
    # device's tokens are refused.
    device_id: int = 0


class InvalidToken(Exception):
    """Missing, malformed, expired or wrongly signed token."""


def invalid_token() -> Problem:
    """The one answer for every token that cannot be used, whatever the cause."""
    return Problem(
        Reason.UNAUTHORIZED,
        "Invalid or expired terminal token; exchange the terminal secret for a new one.",
        headers={"WWW-Authenticate": "Bearer"},
    )


def epoch_ms(moment: datetime | None) -> int:
    """`moment` in whole ms since the epoch, exactly (no float rounding); None is 0."""
    return 0 if moment is None else (moment - _EPOCH) // timedelta(milliseconds=1)


def mint(keyring: KeyRing, claims: TerminalClaims) -> str:
    """Sign `claims` with the newest active token key."""
    key = keyring.signing_key(Purpose.TOKEN, Algorithm.ED25519)
    payload = {
        "sub": str(claims.terminal_id),
        "sto": claims.store_id,
        "mer": claims.merchant_id,
        "aud": AUDIENCE,
        "iat": int(time.time()),
        "exp": claims.expires_at,
        "crd": claims.credentials_since_ms,
    }
    if claims.device_id:
        payload["dev"] = claims.device_id
    private = Ed25519PrivateKey.from_private_bytes(key.secret)
    return jwt.encode(payload, private, algorithm=ALGORITHM, headers={"kid": str(key.id)})


class TokenVerifier:
    """Verifies terminal JWTs against the ring's token keys and caches the result."""

    def __init__(self, keyring: KeyRing) -> None:
        self._public_keys = {
            str(entry.id): Ed25519PrivateKey.from_private_bytes(entry.secret).public_key()
            for entry in keyring.entries()
            if entry.purpose is Purpose.TOKEN
            and entry.status in (KeyStatus.ACTIVE, KeyStatus.VERIFY_ONLY)
        }
        self._cache: dict[str, TerminalClaims] = {}

    def verify(self, token: str) -> TerminalClaims:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > time.time():
                return cached
            del self._cache[token]
        claims = self._decode(token)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = claims
        return claims

    def _decode(self, token: str) -> TerminalClaims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._public_keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidToken("unknown key")
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "sub", "aud"]},
            )
            return TerminalClaims(
                terminal_id=int(payload["sub"]),
                store_id=int(payload["sto"]),
                merchant_id=int(payload["mer"]),
                expires_at=int(payload["exp"]),
                # Tokens minted before rotation existed carry none: they count as never rotated.
                credentials_since_ms=int(payload.get("crd", 0)),
                device_id=int(payload.get("dev", 0)),
            )
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as error:
            raise InvalidToken(str(error)) from None
