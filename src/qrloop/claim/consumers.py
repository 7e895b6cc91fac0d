"""Consumer identifiers (phone or email) are never stored: only a keyed hash that names its key."""

from __future__ import annotations

import hashlib
import hmac
import re

from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from qrloop.errors import Problem, Reason

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")
_PHONE_NOISE = re.compile(r"[\s().-]")
_PHONE = re.compile(r"^\+?\d{6,15}$")


def normalise(identifier: str) -> str:
    """A canonical form, so that ' Ana@Example.com' and 'ana@example.com' are one consumer."""
    text = identifier.strip()
    if "@" in text:
        if not _EMAIL.match(text):
            raise Problem(Reason.BAD_REQUEST, "That does not look like an email address.")
        return "email:" + text.lower()
    phone = _PHONE_NOISE.sub("", text)
    if not _PHONE.match(phone):
        raise Problem(Reason.BAD_REQUEST, "Give a phone number (digits, optional +) or an email.")
    return "phone:" + phone


def consumer_hash(keyring: KeyRing, identifier: str) -> str:
    """`<key id>:<hex>`: HMAC-SHA256 of the normalised identifier under the consumer key."""
    key = keyring.signing_key(Purpose.CONSUMER, Algorithm.HMAC_SHA256)
    return f"{key.id}:{_digest(key.secret, normalise(identifier))}"


def same_consumer(keyring: KeyRing, identifier: str, stored: str) -> bool:
    """Whether `identifier` is the consumer behind `stored`, under the key `stored` names."""
    key_id, _, expected = stored.partition(":")
    key = keyring.get(int(key_id)) if key_id.isdigit() else None
    if key is None or key.purpose is not Purpose.CONSUMER:
        return False
    return hmac.compare_digest(_digest(key.secret, normalise(identifier)), expected)


def _digest(secret: bytes, normalised: str) -> str:
    return hmac.new(secret, normalised.encode(), hashlib.sha256).hexdigest()[:32]
