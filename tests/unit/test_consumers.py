"""Consumer identifiers: one person however typed, kept only as keyed hashes that survive a
key rotation."""

from __future__ import annotations

import pytest

from qrloop.claim.consumers import Consumer, consumer_of, identify
from qrloop.claim.otp import masked
from qrloop.codes.keyring import Algorithm, KeyRing, KeyStatus, Purpose
from qrloop.errors import Problem
from qrloop.messages.catalogue import language_of, render

REVIEW_VARIANTS = [
    "victim+1@example.com",
    "VICTIM+3@Example.com",
    "victim@example.com",
    "+8613800000000",
    "8613800000000",
    "008613800000000",
    "+86 138-0000-0000",
]


def test_the_review_variants_are_two_people() -> None:
    """The seven spellings that each took a new code in review name one email person and one
    phone person, in E.164 and lower-cased without the +tag."""
    people = {identify(variant, "CN").person for variant in REVIEW_VARIANTS}
    assert people == {"email:victim@example.com", "phone:+8613800000000"}


def test_the_recipient_keeps_what_the_person_typed_normalised() -> None:
    """Messages go where the person asked (a +tag kept), with the domain in IDNA form and
    the phone number in E.164; the region setting reads national numbers."""
    assert identify(" VICTIM+3@Example.com ", "CN").recipient == "victim+3@example.com"
    assert identify("ana@bücher.de", "CN").person == "email:ana@xn--bcher-kva.de"
    assert identify("138 0000 0000", "CN").recipient == "+8613800000000"
    assert identify("020 7946 0958", "GB").recipient == "+442079460958"
    assert identify("+8613800000000", "CN").channel == "sms"


@pytest.mark.parametrize("typed", ["call me", "+86 12", "ana@", "ana@@example.com", "a@b", ""])
def test_malformed_identifiers_are_a_bad_request(typed: str) -> None:
    """Neither a valid phone number nor an email address: 400 saying so."""
    with pytest.raises(Problem) as refused:
        identify(typed, "CN")
    assert refused.value.status == 400


def test_hashes_survive_a_rotation_of_the_consumer_key() -> None:
    """After a rotation the person is hashed under the new key first and the old one still,
    so a claim or a cap stored under the old key is still theirs; a retired key no longer
    counts, and another person never matches."""
    ring = KeyRing()
    old = ring.generate(Purpose.CONSUMER, Algorithm.HMAC_SHA256)
    victim = identify("victim@example.com", "CN")
    before = consumer_of(ring, victim)
    new = ring.rotate(Purpose.CONSUMER, Algorithm.HMAC_SHA256)
    after = consumer_of(ring, identify("Victim+2@example.com", "CN"))
    assert after.newest.startswith(f"{new.id}:")
    assert after.hashes[1] == before.newest
    assert after.matches(before.newest)
    assert not consumer_of(ring, identify("other@example.com", "CN")).matches(before.newest)
    assert Consumer.unpack(after.pack()) == after
    ring.set_status(old.id, KeyStatus.RETIRED)
    assert not consumer_of(ring, victim).matches(before.newest)


def test_masked_recipients_and_message_languages() -> None:
    """Pages show only enough of the recipient to recognise it; a browser preferring any
    Chinese gets zh-CN messages, every other one English."""
    assert masked("victim+3@example.com") == "v•••@example.com"
    assert masked("+8613800000042") == "•••• 0042"
    assert language_of("zh-TW,zh;q=0.9") == "zh-CN"
    assert language_of("en-GB,zh-CN;q=0.5") == "en"
    assert language_of(None) == "en"
    subject, body = render("otp", "zh-CN", code="123456")
    assert "123456" in subject
    assert "验证码是 123456" in body
