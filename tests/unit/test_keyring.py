"""The key ring: statuses, rotation, persistence and the public JWKS."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrloop.codes.keyring import (
    Algorithm,
    KeyEntry,
    KeyRing,
    KeyRingError,
    KeyStatus,
    Purpose,
    ensure_dev_keys,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET = bytes(range(32))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mixed_ring() -> KeyRing:
    ring = KeyRing()
    ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256)
    ring.generate(Purpose.CODE, Algorithm.ED25519)
    ring.generate(Purpose.TOKEN, Algorithm.ED25519)
    ring.set_status(ring.generate(Purpose.CODE, Algorithm.ED25519).id, KeyStatus.RETIRED)
    ring.set_status(ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256).id, KeyStatus.REVOKED)
    return ring


def test_save_load_round_trip_with_private_permissions(tmp_path: Path) -> None:
    """save writes 0600 in a new 0700 directory, leaves no temp file; load reads it back."""
    ring = _mixed_ring()
    path = tmp_path / "keys" / "keyring.json"
    ring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["keyring.json"]
    assert KeyRing.load(path).entries() == ring.entries()


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    """Saving again replaces the previous content and keeps mode 0600."""
    path = tmp_path / "keyring.json"
    path.write_text('{"keys": []}')
    path.chmod(0o644)
    ring = _mixed_ring()
    ring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRing.load(path).entries() == ring.entries()


def test_load_missing_file_is_empty_ring(tmp_path: Path) -> None:
    """A ring file that does not exist loads as an empty ring."""
    assert KeyRing.load(tmp_path / "absent.json").entries() == []


def test_json_round_trip_and_format() -> None:
    """to_json/from_json round trip in the documented format, secrets as unpadded base64url."""
    ring = _mixed_ring()
    data = json.loads(ring.to_json())
    first = data["keys"][0]
    assert set(first) == {"id", "purpose", "algorithm", "status", "created", "secret"}
    assert first["secret"] == _b64url(ring.entries()[0].secret)
    assert KeyRing.from_json(ring.to_json()).entries() == ring.entries()


def _ring_json(*entries: dict[str, object]) -> str:
    return json.dumps({"keys": list(entries)})


def _entry(**changes: object) -> dict[str, object]:
    """A valid entry in ring format, with fields changed, or dropped when set to None."""
    entry: dict[str, object] = {
        "id": 1,
        "purpose": "code",
        "algorithm": "hmac-sha256",
        "status": "active",
        "created": NOW.isoformat(),
        "secret": _b64url(SECRET),
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def test_from_json_accepts_padded_base64url_and_z_suffix() -> None:
    """Hand-written rings may use padded base64url and a "Z" timestamp."""
    text = _ring_json(
        _entry(
            id=7, created="2025-01-02T03:04:05Z", secret=base64.urlsafe_b64encode(SECRET).decode()
        )
    )
    (entry,) = KeyRing.from_json(text).entries()
    assert entry == KeyEntry(7, Purpose.CODE, Algorithm.HMAC_SHA256, KeyStatus.ACTIVE, NOW, SECRET)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"keys": {}}',
        '{"keys": [1]}',
        _ring_json(_entry(), _entry()),
        _ring_json(_entry(id=0)),
        _ring_json(_entry(id=256)),
        _ring_json(_entry(id="1")),
        _ring_json(_entry(id=True)),
        _ring_json(_entry(purpose="other")),
        _ring_json(_entry(algorithm="rsa")),
        _ring_json(_entry(status="paused")),
        _ring_json(_entry(status=None)),
        _ring_json(_entry(created="2025-01-02T03:04:05")),
        _ring_json(_entry(created="2025-01-02T03:04:05+08:00")),
        _ring_json(_entry(created="yesterday")),
        _ring_json(_entry(secret=_b64url(SECRET[:31]))),
        _ring_json(_entry(secret=_b64url(SECRET) + "!")),
        _ring_json(_entry(secret=base64.b64encode(bytes([251] * 32)).decode())),
        _ring_json(_entry(secret=123)),
        _ring_json(_entry(secret=None)),
        _ring_json(_entry(purpose="token")),
    ],
)
def test_from_json_rejects_malformed_rings(text: str) -> None:
    """Anything but a well-formed ring is KeyRingError, and the message never quotes the secret."""
    with pytest.raises(KeyRingError) as caught:
        KeyRing.from_json(text)
    assert _b64url(SECRET)[:8] not in str(caught.value)


def test_generate_uses_next_id_across_purposes() -> None:
    """New keys are ACTIVE with fresh 32-byte secrets and ids that count up across purposes."""
    ring = KeyRing()
    made = [
        ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256),
        ring.generate(Purpose.TOKEN, Algorithm.ED25519),
        ring.generate(Purpose.CODE, Algorithm.ED25519),
    ]
    assert [e.id for e in made] == [1, 2, 3]
    assert all(e.status is KeyStatus.ACTIVE and len(e.secret) == 32 for e in made)
    assert len({e.secret for e in made}) == 3
    assert all(e.created.utcoffset() == timedelta(0) for e in made)


def test_ids_are_not_reused_and_run_out_at_255() -> None:
    """Ids are never reused; once id 255 is taken, generate raises KeyRingError."""
    ring = KeyRing()
    for _ in range(255):
        ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256)
    with pytest.raises(KeyRingError, match="full"):
        ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256)


def test_generate_refuses_hmac_token_key() -> None:
    """Token keys sign EdDSA JWTs, so an HMAC token key is refused."""
    with pytest.raises(KeyRingError):
        KeyRing().generate(Purpose.TOKEN, Algorithm.HMAC_SHA256)


def test_rotate_demotes_previous_active_key() -> None:
    """rotate adds an active key and makes the old one of the same kind verify-only, only that."""
    ring = KeyRing()
    old = ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256)
    other = ring.generate(Purpose.CODE, Algorithm.ED25519)
    new = ring.rotate(Purpose.CODE, Algorithm.HMAC_SHA256)
    assert new.status is KeyStatus.ACTIVE
    assert ring.get(old.id) == KeyEntry(
        old.id, old.purpose, old.algorithm, KeyStatus.VERIFY_ONLY, old.created, old.secret
    )
    assert ring.get(other.id) == other
    assert ring.signing_key(Purpose.CODE, Algorithm.HMAC_SHA256) == new


def test_signing_key_is_newest_active() -> None:
    """signing_key returns the newest ACTIVE key of the purpose and algorithm."""
    ring = KeyRing()
    ring.generate(Purpose.CODE, Algorithm.ED25519)
    newest = ring.generate(Purpose.CODE, Algorithm.ED25519)
    ring.generate(Purpose.TOKEN, Algorithm.ED25519)
    assert ring.signing_key(Purpose.CODE, Algorithm.ED25519) == newest


@pytest.mark.parametrize("status", [KeyStatus.VERIFY_ONLY, KeyStatus.RETIRED, KeyStatus.REVOKED])
def test_signing_key_requires_an_active_key(status: KeyStatus) -> None:
    """With no ACTIVE key of that kind, signing_key raises KeyRingError."""
    ring = KeyRing()
    ring.set_status(ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256).id, status)
    with pytest.raises(KeyRingError):
        ring.signing_key(Purpose.CODE, Algorithm.HMAC_SHA256)


@pytest.mark.parametrize("status", [KeyStatus.ACTIVE, KeyStatus.VERIFY_ONLY, KeyStatus.RETIRED])
def test_revocation_is_final(status: KeyStatus) -> None:
    """A revoked key cannot be given any other status; revoking again is harmless."""
    ring = KeyRing()
    key = ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256)
    ring.set_status(key.id, KeyStatus.REVOKED)
    with pytest.raises(KeyRingError, match="final"):
        ring.set_status(key.id, status)
    assert ring.set_status(key.id, KeyStatus.REVOKED).status is KeyStatus.REVOKED
    assert ring.get(key.id) == ring.set_status(key.id, KeyStatus.REVOKED)


def test_set_status_unknown_id() -> None:
    """set_status on an id the ring does not have raises KeyRingError."""
    with pytest.raises(KeyRingError):
        KeyRing().set_status(9, KeyStatus.RETIRED)


def test_entries_sorted_and_get() -> None:
    """entries() is sorted by id and get() finds a key by id or returns None."""
    ring = KeyRing(
        [
            KeyEntry(9, Purpose.CODE, Algorithm.HMAC_SHA256, KeyStatus.ACTIVE, NOW, SECRET),
            KeyEntry(3, Purpose.CODE, Algorithm.ED25519, KeyStatus.ACTIVE, NOW, SECRET),
        ]
    )
    assert [e.id for e in ring.entries()] == [3, 9]
    assert ring.get(9) is not None
    assert ring.get(4) is None


@given(secret=st.binary(min_size=32, max_size=32))
def test_repr_hides_the_secret(secret: bytes) -> None:
    """Neither repr nor str of a key shows its secret in any encoding."""
    entry = KeyEntry(1, Purpose.CODE, Algorithm.HMAC_SHA256, KeyStatus.ACTIVE, NOW, secret)
    for shown in (repr(entry), str(entry)):
        assert "secret" not in shown
        assert repr(secret) not in shown
        assert secret.hex() not in shown
        assert _b64url(secret) not in shown


def test_jwks_has_public_keys_only() -> None:
    """The JWKS lists every non-revoked Ed25519 key as an RFC 8037 OKP key without private parts."""
    ring = _mixed_ring()
    revoked = ring.generate(Purpose.TOKEN, Algorithm.ED25519)
    ring.set_status(revoked.id, KeyStatus.REVOKED)
    jwks = ring.public_jwks()
    keys = jwks["keys"]
    assert isinstance(keys, list)
    expected = [
        e
        for e in ring.entries()
        if e.algorithm is Algorithm.ED25519 and e.status is not KeyStatus.REVOKED
    ]
    assert [k["kid"] for k in keys] == [str(e.id) for e in expected]
    for jwk, entry in zip(keys, expected, strict=True):
        assert jwk == {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(entry.public_key_bytes()),
            "kid": str(entry.id),
            "use": "sig",
            "alg": "EdDSA",
        }
    text = json.dumps(jwks)
    for entry in ring.entries():
        assert _b64url(entry.secret) not in text


def test_jwks_verifies_a_token_signed_with_the_token_key() -> None:
    """A JWT signed (EdDSA) with the token key verifies with its JWKS entry via pyjwt."""
    ring = _mixed_ring()
    key = ring.signing_key(Purpose.TOKEN, Algorithm.ED25519)
    token = jwt.encode(
        {"sub": "t1"}, key.ed25519_private_key(), algorithm="EdDSA", headers={"kid": str(key.id)}
    )
    jwk = jwt.PyJWKSet.from_dict(ring.public_jwks())[str(key.id)]
    assert jwt.decode(token, jwk.key, algorithms=["EdDSA"])["sub"] == "t1"


def test_ed25519_helpers_refuse_hmac_keys() -> None:
    """Asking an HMAC key for an Ed25519 key object is KeyRingError."""
    entry = KeyEntry(1, Purpose.CODE, Algorithm.HMAC_SHA256, KeyStatus.ACTIVE, NOW, SECRET)
    with pytest.raises(KeyRingError):
        entry.ed25519_private_key()


@pytest.mark.parametrize(
    "created", [datetime(2025, 1, 1), datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=8)))]
)
def test_created_must_be_utc(created: datetime) -> None:
    """A key's created time must be an aware UTC datetime."""
    with pytest.raises(KeyRingError):
        KeyEntry(1, Purpose.CODE, Algorithm.HMAC_SHA256, KeyStatus.ACTIVE, created, SECRET)


def test_duplicate_ids_are_refused() -> None:
    """A ring cannot hold two keys with the same id."""
    entry = KeyEntry(1, Purpose.CODE, Algorithm.HMAC_SHA256, KeyStatus.ACTIVE, NOW, SECRET)
    with pytest.raises(KeyRingError, match="duplicate"):
        KeyRing([entry, entry])


def test_ensure_dev_keys_creates_missing_working_keys_once() -> None:
    """ensure_dev_keys adds the code, token, consumer and webhook keys only where none is
    active."""
    ring = KeyRing()
    existing = ring.generate(Purpose.CODE, Algorithm.ED25519)
    made = ensure_dev_keys(ring)
    assert {(e.purpose, e.algorithm) for e in made} == {
        (Purpose.CODE, Algorithm.HMAC_SHA256),
        (Purpose.TOKEN, Algorithm.ED25519),
        (Purpose.CONSUMER, Algorithm.HMAC_SHA256),
        (Purpose.WEBHOOK, Algorithm.HMAC_SHA256),
    }
    assert ring.signing_key(Purpose.CODE, Algorithm.ED25519) == existing
    assert ensure_dev_keys(ring) == []
