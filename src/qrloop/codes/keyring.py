"""The key ring: code and token keys with their status, stored as one JSON file."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_KEY_ID = 255
SECRET_LEN = 32
_B64URL = re.compile("[A-Za-z0-9_-]*={0,2}")


class Algorithm(StrEnum):
    """How a key signs."""

    HMAC_SHA256 = "hmac-sha256"
    ED25519 = "ed25519"


class Purpose(StrEnum):
    """What a key signs: codes, terminal JWTs (EdDSA, kid = str(key id)), consumer
    identifiers (an HMAC pepper: claims store only keyed hashes of phones and emails), or
    webhook endpoints (each endpoint's signing secret is derived from it, never stored)."""

    CODE = "code"
    TOKEN = "token"  # noqa: S105 - a purpose name, not a password
    CONSUMER = "consumer"
    WEBHOOK = "webhook"


class KeyStatus(StrEnum):
    """Lifecycle of a key; see keys/README.md."""

    ACTIVE = "active"
    VERIFY_ONLY = "verify-only"
    RETIRED = "retired"
    REVOKED = "revoked"


class KeyRingError(Exception):
    """Invalid key data or an impossible key operation."""


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key. `secret` is 32 random bytes (the private seed for Ed25519) and never in repr."""

    id: int
    purpose: Purpose
    algorithm: Algorithm
    status: KeyStatus
    created: datetime
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.id <= MAX_KEY_ID:
            raise KeyRingError(f"key id must be 1..{MAX_KEY_ID}, got {self.id}")
        if len(self.secret) != SECRET_LEN:
            raise KeyRingError(f"key {self.id}: secret must be {SECRET_LEN} bytes")
        if self.created.utcoffset() != timedelta(0):
            raise KeyRingError(f"key {self.id}: created must be a UTC datetime")
        if self.purpose is Purpose.TOKEN and self.algorithm is not Algorithm.ED25519:
            raise KeyRingError(f"key {self.id}: token keys must be {Algorithm.ED25519}")

    def ed25519_private_key(self) -> Ed25519PrivateKey:
        """The Ed25519 private key derived from the seed."""
        if self.algorithm is not Algorithm.ED25519:
            raise KeyRingError(f"key {self.id} is not an {Algorithm.ED25519} key")
        return Ed25519PrivateKey.from_private_bytes(self.secret)

    def ed25519_public_key(self) -> Ed25519PublicKey:
        """The Ed25519 public key."""
        return self.ed25519_private_key().public_key()

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self.ed25519_public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class KeyRing:
    """Keys by id. Ids share one namespace across purposes and are never reused."""

    def __init__(self, entries: list[KeyEntry] | None = None) -> None:
        self._keys: dict[int, KeyEntry] = {}
        for entry in entries or []:
            if entry.id in self._keys:
                raise KeyRingError(f"duplicate key id {entry.id}")
            self._keys[entry.id] = entry

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Read a ring file; a missing file is an empty ring."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        """Parse the ring format `{"keys": [...]}`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyRingError(f"key ring is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise KeyRingError('key ring must be an object with a "keys" list')
        return cls([_entry_from_json(item) for item in data["keys"]])

    def to_json(self) -> str:
        """Serialise the ring, secrets included."""
        return json.dumps({"keys": [_entry_to_json(e) for e in self.entries()]}, indent=2) + "\n"

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600, creating the parent directory with mode 0700."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600, so the secret is never readable by others, even briefly.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.to_json())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def entries(self) -> list[KeyEntry]:
        """All keys, sorted by id."""
        return [self._keys[key_id] for key_id in sorted(self._keys)]

    def get(self, key_id: int) -> KeyEntry | None:
        """The key with this id, if any."""
        return self._keys.get(key_id)

    def generate(self, purpose: Purpose, algorithm: Algorithm) -> KeyEntry:
        """Add a new ACTIVE key under the next id."""
        key_id = max(self._keys, default=0) + 1
        if key_id > MAX_KEY_ID:
            raise KeyRingError(f"key id {MAX_KEY_ID} is used: the ring is full")
        entry = KeyEntry(
            id=key_id,
            purpose=purpose,
            algorithm=algorithm,
            status=KeyStatus.ACTIVE,
            created=datetime.now(UTC).replace(microsecond=0),
            secret=secrets.token_bytes(SECRET_LEN),
        )
        self._keys[key_id] = entry
        return entry

    def rotate(self, purpose: Purpose, algorithm: Algorithm) -> KeyEntry:
        """Add a new ACTIVE key and demote the previous active ones to VERIFY_ONLY."""
        previous = self._active(purpose, algorithm)
        entry = self.generate(purpose, algorithm)
        for old in previous:
            self._keys[old.id] = replace(old, status=KeyStatus.VERIFY_ONLY)
        return entry

    def set_status(self, key_id: int, status: KeyStatus) -> KeyEntry:
        """Change a key's status; REVOKED is final."""
        entry = self._keys.get(key_id)
        if entry is None:
            raise KeyRingError(f"no key with id {key_id}")
        if entry.status is KeyStatus.REVOKED and status is not KeyStatus.REVOKED:
            raise KeyRingError(f"key {key_id} is revoked; revocation is final")
        entry = replace(entry, status=status)
        self._keys[key_id] = entry
        return entry

    def signing_key(self, purpose: Purpose, algorithm: Algorithm) -> KeyEntry:
        """The newest ACTIVE key of this purpose and algorithm."""
        active = self._active(purpose, algorithm)
        if not active:
            raise KeyRingError(f"no active {purpose} key for {algorithm}")
        return max(active, key=lambda e: (e.created, e.id))

    def public_jwks(self) -> dict[str, object]:
        """JWKS (RFC 8037) of the public halves of all non-revoked Ed25519 keys."""
        return {
            "keys": [
                _public_jwk(e)
                for e in self.entries()
                if e.algorithm is Algorithm.ED25519 and e.status is not KeyStatus.REVOKED
            ]
        }

    def _active(self, purpose: Purpose, algorithm: Algorithm) -> list[KeyEntry]:
        return [
            e
            for e in self.entries()
            if e.status is KeyStatus.ACTIVE and e.purpose is purpose and e.algorithm is algorithm
        ]


_DEV_KEY_KINDS = (
    (Purpose.CODE, Algorithm.HMAC_SHA256),
    (Purpose.CODE, Algorithm.ED25519),
    (Purpose.TOKEN, Algorithm.ED25519),
    (Purpose.CONSUMER, Algorithm.HMAC_SHA256),
    (Purpose.WEBHOOK, Algorithm.HMAC_SHA256),
)


def ensure_dev_keys(ring: KeyRing) -> list[KeyEntry]:
    """Generate whichever of the working keys has no active key yet; return those made."""
    return [
        ring.generate(purpose, algorithm)
        for purpose, algorithm in _DEV_KEY_KINDS
        if not ring._active(purpose, algorithm)
    ]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: object) -> bytes:
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_jwk(entry: KeyEntry) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(entry.public_key_bytes()),
        "kid": str(entry.id),
        "use": "sig",
        "alg": "EdDSA",
    }


def _entry_to_json(entry: KeyEntry) -> dict[str, object]:
    return {
        "id": entry.id,
        "purpose": entry.purpose.value,
        "algorithm": entry.algorithm.value,
        "status": entry.status.value,
        "created": entry.created.isoformat(),
        "secret": _b64url(entry.secret),
    }


def _entry_from_json(item: object) -> KeyEntry:
    if not isinstance(item, dict):
        raise KeyRingError("each key must be a JSON object")
    key_id = item.get("id")
    if type(key_id) is not int:
        raise KeyRingError(f"key id must be an integer, got {key_id!r}")
    try:
        return KeyEntry(
            id=key_id,
            purpose=Purpose(item["purpose"]),
            algorithm=Algorithm(item["algorithm"]),
            status=KeyStatus(item["status"]),
            created=datetime.fromisoformat(item["created"]),
            secret=_b64url_decode(item["secret"]),
        )
    except KeyError as exc:
        raise KeyRingError(f"key {key_id}: missing field {exc}") from None
    # No exception text here: it could quote part of the secret.
    except (TypeError, ValueError):
        raise KeyRingError(f"key {key_id}: invalid field value") from None
