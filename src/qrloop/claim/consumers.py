"""Consumer identifiers (phone or email): normalised to one person, stored only as keyed hashes.

A person is their phone number in E.164 form or their email address lower-cased with an ASCII
(IDNA) domain and without a `+tag`, so the variants a stranger could type to look like someone
new (`Victim+3@Example.com`, `008613800000000`) are one person. Only HMACs of that form under
the consumer key are kept; each names its key, and every consumer key still verifiable is
tried, so rotating the key neither forgets a claim nor resets a cap.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from qrloop.claim.texts import Refusal
from qrloop.codes.keyring import Algorithm, KeyRing, KeyStatus, Purpose
from qrloop.errors import Reason

Channel = Literal["email", "sms"]
_VERIFIABLE = (KeyStatus.ACTIVE, KeyStatus.VERIFY_ONLY)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a typed identifier names, and where a message to them goes."""

    person: str  # "email:ana@example.com" or "phone:+8613800000000": one per human
    channel: Channel
    recipient: str  # the address as typed, normalised (a +tag kept: the person chose it)


@dataclass(frozen=True, slots=True)
class Consumer:
    """One person's keyed hashes (`<key id>:<hex>`), newest key first."""

    hashes: tuple[str, ...]

    @property
    def newest(self) -> str:
        """The hash new records are stored under."""
        return self.hashes[0]

    def matches(self, stored: str) -> bool:
        """Whether `stored` (under any verifiable key) is this person, in constant time."""
        key_id, _, _ = stored.partition(":")
        return any(
            hmac.compare_digest(mine, stored)
            for mine in self.hashes
            if mine.partition(":")[0] == key_id
        )

    def pack(self) -> str:
        return ",".join(self.hashes)

    @classmethod
    def unpack(cls, packed: str) -> Consumer:
        return cls(tuple(packed.split(",")))


def identify(identifier: str, phone_region: str) -> Identity:
    """The person behind a typed phone number or email, or a 400 saying what is wrong."""
    text = identifier.strip()
    if "@" in text:
        return _email(text)
    return _phone(text, phone_region)


def _email(text: str) -> Identity:
    try:
        found = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise Refusal(Reason.BAD_REQUEST, "error.email") from None
    domain = found.ascii_domain.lower()
    local = found.local_part.lower()
    person = local.split("+", 1)[0] or local
    return Identity(f"email:{person}@{domain}", "email", f"{local}@{domain}")


def _phone(text: str, region: str) -> Identity:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise Refusal(Reason.BAD_REQUEST, "error.identifier")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Identity(f"phone:{e164}", "sms", e164)


def consumer_of(keyring: KeyRing, identity: Identity) -> Consumer:
    """The person's hash under every consumer key still verifiable, the signing key's first."""
    newest = keyring.signing_key(Purpose.CONSUMER, Algorithm.HMAC_SHA256)
    older = [
        key
        for key in keyring.entries()
        if key.purpose is Purpose.CONSUMER
        and key.algorithm is Algorithm.HMAC_SHA256
        and key.status in _VERIFIABLE
        and key.id != newest.id
    ]
    keys = [newest, *older]
    return Consumer(tuple(f"{key.id}:{keyed(key.secret, identity.person)}" for key in keys))


def keyed(secret: bytes, text: str) -> str:
    """HMAC-SHA256 of `text` under `secret`, 128 bits in hex."""
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()[:32]
