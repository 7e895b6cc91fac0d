"""Code format v1: signing, strict verification, claim tokens, typed form."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrloop.codes.format import (
    ED25519_CODE_LEN,
    HMAC_CODE_LEN,
    MAX_CAMPAIGN,
    MAX_SERIAL,
    CodeRef,
    InvalidCode,
    RetiredKey,
    RevokedKey,
    Signer,
    Verifier,
    parse_input,
    to_typed,
)
from qrloop.codes.keyring import Algorithm, KeyEntry, KeyRing, KeyStatus, Purpose

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CODE_DOMAIN = b"qrloop/code/v1\x00"


def _ring() -> tuple[KeyRing, dict[KeyStatus, dict[Algorithm, KeyEntry]]]:
    """One HMAC and one Ed25519 code key per status, plus a token key sharing the id space."""
    ring = KeyRing()
    keys: dict[KeyStatus, dict[Algorithm, KeyEntry]] = {}
    for status in KeyStatus:
        for algorithm in Algorithm:
            entry = ring.generate(Purpose.CODE, algorithm)
            keys.setdefault(status, {})[algorithm] = ring.set_status(entry.id, status)
    ring.generate(Purpose.TOKEN, Algorithm.ED25519)
    return ring, keys


RING, KEYS = _ring()
VERIFIER = Verifier(RING)
ACTIVE = KEYS[KeyStatus.ACTIVE]
SIGNERS = {algorithm: Signer(key) for algorithm, key in ACTIVE.items()}
LENGTHS = {Algorithm.HMAC_SHA256: HMAC_CODE_LEN, Algorithm.ED25519: ED25519_CODE_LEN}

algorithms = st.sampled_from(list(Algorithm))
campaigns = st.integers(0, MAX_CAMPAIGN)
serials = st.integers(0, MAX_SERIAL)


@st.composite
def codes(draw: st.DrawFn) -> str:
    """A valid code under an active key."""
    return SIGNERS[draw(algorithms)].sign(draw(campaigns), draw(serials))


def _b32decode(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def _b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=")


def _substitute(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


@given(algorithm=algorithms, campaign=campaigns, serial=serials)
def test_sign_verify_round_trip(algorithm: Algorithm, campaign: int, serial: int) -> None:
    """A signed code is canonical base32 of its length and verifies to campaign, serial, key."""
    code = SIGNERS[algorithm].sign(campaign, serial)
    assert len(code) == LENGTHS[algorithm]
    assert re.fullmatch("[A-Z2-7]+", code)
    assert VERIFIER.verify(code) == CodeRef(campaign, serial, ACTIVE[algorithm].id)


@given(campaign=campaigns, serial=serials)
def test_hmac_code_layout_matches_the_spec(campaign: int, serial: int) -> None:
    """An HMAC code is version|key|campaign|serial|HMAC-SHA256(domain+header)[:16]."""
    key = ACTIVE[Algorithm.HMAC_SHA256]
    data = _b32decode(SIGNERS[Algorithm.HMAC_SHA256].sign(campaign, serial))
    header = bytes([1, key.id]) + campaign.to_bytes(4, "big") + serial.to_bytes(6, "big")
    tag = hmac.new(key.secret, CODE_DOMAIN + header, hashlib.sha256).digest()[:16]
    assert data == header + tag


@given(campaign=campaigns, serial=serials)
def test_ed25519_code_layout_matches_the_spec(campaign: int, serial: int) -> None:
    """An Ed25519 code is the header followed by a signature over domain+header."""
    key = ACTIVE[Algorithm.ED25519]
    data = _b32decode(SIGNERS[Algorithm.ED25519].sign(campaign, serial))
    header = bytes([1, key.id]) + campaign.to_bytes(4, "big") + serial.to_bytes(6, "big")
    assert data[:12] == header
    key.ed25519_public_key().verify(data[12:], CODE_DOMAIN + header)


@given(code=codes(), data=st.data())
def test_any_single_bit_flip_is_invalid(code: str, data: st.DataObject) -> None:
    """Flipping any one bit of a code's bytes, version and key id included, makes it invalid."""
    raw = bytearray(_b32decode(code))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(InvalidCode):
        VERIFIER.verify(_b32encode(bytes(raw)))


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_every_single_bit_flip_of_one_code_is_invalid(algorithm: Algorithm) -> None:
    """Exhaustively, each of a code's bits flipped alone makes it InvalidCode."""
    raw = _b32decode(SIGNERS[algorithm].sign(12345, 67890))
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(InvalidCode):
            VERIFIER.verify(_b32encode(bytes(flipped)))


@given(text=st.text())
def test_random_text_is_only_ever_invalid(text: str) -> None:
    """Arbitrary text never crashes the verifier: it is InvalidCode."""
    with pytest.raises(InvalidCode):
        VERIFIER.verify(text)


@given(
    text=st.sampled_from([HMAC_CODE_LEN, ED25519_CODE_LEN]).flatmap(
        lambda n: st.text(alphabet=ALPHABET, min_size=n, max_size=n)
    )
)
def test_random_base32_of_code_length_is_invalid(text: str) -> None:
    """Well-formed base32 of the right length without a valid tag is InvalidCode."""
    with pytest.raises(InvalidCode):
        VERIFIER.verify(text)


@given(text=st.text())
def test_parse_input_never_crashes(text: str) -> None:
    """Arbitrary input to parse_input gives either a string or InvalidCode."""
    with contextlib.suppress(InvalidCode):
        assert isinstance(parse_input(text), str)


def _foreign_key(key_id: int, algorithm: Algorithm) -> KeyEntry:
    """A fresh code key the verifier's ring does not hold."""
    return KeyEntry(
        key_id, Purpose.CODE, algorithm, KeyStatus.ACTIVE, datetime.now(UTC), os.urandom(32)
    )


@given(algorithm=algorithms, campaign=campaigns, serial=serials)
def test_key_missing_from_ring_is_invalid(algorithm: Algorithm, campaign: int, serial: int) -> None:
    """A code signed under a key id the ring does not have is InvalidCode."""
    assert RING.get(200) is None
    with pytest.raises(InvalidCode):
        VERIFIER.verify(Signer(_foreign_key(200, algorithm)).sign(campaign, serial))


@given(algorithm=algorithms, campaign=campaigns, serial=serials)
def test_different_secret_under_same_id_is_invalid(
    algorithm: Algorithm, campaign: int, serial: int
) -> None:
    """A code signed under the same key id but another secret is InvalidCode."""
    impostor = _foreign_key(ACTIVE[algorithm].id, algorithm)
    with pytest.raises(InvalidCode):
        VERIFIER.verify(Signer(impostor).sign(campaign, serial))


def test_token_key_id_is_not_a_code_key() -> None:
    """A code naming a token key's id is InvalidCode, even with that key's secret."""
    token_key = RING.signing_key(Purpose.TOKEN, Algorithm.ED25519)
    as_code_key = KeyEntry(
        token_key.id,
        Purpose.CODE,
        token_key.algorithm,
        KeyStatus.ACTIVE,
        token_key.created,
        token_key.secret,
    )
    with pytest.raises(InvalidCode):
        VERIFIER.verify(Signer(as_code_key).sign(1, 1))


@given(algorithm=algorithms, campaign=campaigns, serial=serials)
def test_revoked_key_fails_closed(algorithm: Algorithm, campaign: int, serial: int) -> None:
    """A valid tag under a revoked key raises RevokedKey."""
    key = KEYS[KeyStatus.REVOKED][algorithm]
    code = Signer(_with_status(key, KeyStatus.ACTIVE)).sign(campaign, serial)
    with pytest.raises(RevokedKey):
        VERIFIER.verify(code)


@given(algorithm=algorithms, campaign=campaigns, serial=serials)
def test_retired_key_has_lapsed(algorithm: Algorithm, campaign: int, serial: int) -> None:
    """A valid tag under a retired key raises RetiredKey."""
    code = Signer(KEYS[KeyStatus.RETIRED][algorithm]).sign(campaign, serial)
    with pytest.raises(RetiredKey):
        VERIFIER.verify(code)


@given(algorithm=algorithms, campaign=campaigns, serial=serials)
def test_verify_only_key_still_verifies(algorithm: Algorithm, campaign: int, serial: int) -> None:
    """A code under a verify-only key verifies normally."""
    key = KEYS[KeyStatus.VERIFY_ONLY][algorithm]
    code = Signer(key).sign(campaign, serial)
    assert VERIFIER.verify(code) == CodeRef(campaign, serial, key.id)


@given(
    algorithm=algorithms,
    status=st.sampled_from(list(KeyStatus)),
    campaign=campaigns,
    serial=serials,
)
def test_identify_names_a_genuine_code_whatever_its_key_status(
    algorithm: Algorithm, status: KeyStatus, campaign: int, serial: int
) -> None:
    """identify (for a code's history) names the code under a key of any status, revoked and
    retired included; only verify refuses those."""
    key = KEYS[status][algorithm]
    code = Signer(_with_status(key, KeyStatus.ACTIVE)).sign(campaign, serial)
    assert VERIFIER.identify(code) == CodeRef(campaign, serial, key.id)


@given(code=codes())
def test_identify_refuses_a_forgery_as_verify_does(code: str) -> None:
    """A code with one character of its tag changed is InvalidCode to identify too."""
    forged = code[:-1] + ("A" if code[-1] != "A" else "B")
    with pytest.raises(InvalidCode):
        VERIFIER.identify(forged)


@given(code=codes(), data=st.data())
def test_forgery_under_revoked_key_is_invalid_not_revoked(code: str, data: st.DataObject) -> None:
    """A bad tag naming a revoked key is InvalidCode: RevokedKey needs a valid tag."""
    raw = bytearray(_b32decode(code))
    algorithm = Algorithm.HMAC_SHA256 if len(code) == HMAC_CODE_LEN else Algorithm.ED25519
    raw[1] = KEYS[KeyStatus.REVOKED][algorithm].id
    with pytest.raises(InvalidCode):
        VERIFIER.verify(_b32encode(bytes(raw)))


def _with_status(key: KeyEntry, status: KeyStatus) -> KeyEntry:
    return KeyEntry(key.id, key.purpose, key.algorithm, status, key.created, key.secret)


@pytest.mark.parametrize(
    "bad",
    [
        "0",
        "1",
        "8",
        "9",
        "=",
        " ",
        "\t",
        "\n",
        "_",
        "+",
        "-",
        ".",
        "a",
        "z",
        "\u0663",
        "\uff21",
        "é",
    ],
)
@given(code=codes(), data=st.data())
def test_any_character_outside_the_alphabet_is_invalid(
    bad: str, code: str, data: st.DataObject
) -> None:
    """Any one character outside A-Z2-7 (digit, "=", space, sign, non-ASCII) is InvalidCode."""
    index = data.draw(st.integers(0, len(code) - 1))
    with pytest.raises(InvalidCode):
        VERIFIER.verify(_substitute(code, index, bad))


@given(code=codes())
def test_lowercase_canonical_text_is_rejected(code: str) -> None:
    """Verifier.verify accepts uppercase only; lowercase goes through parse_input first."""
    with pytest.raises(InvalidCode):
        VERIFIER.verify(code.lower())
    VERIFIER.verify(parse_input(code.lower()))


@given(
    code=codes(), cut=st.integers(1, 5), extra=st.text(alphabet=ALPHABET, min_size=1, max_size=5)
)
def test_wrong_length_is_invalid(code: str, cut: int, extra: str) -> None:
    """A code with characters missing or added is InvalidCode."""
    for text in (code[:-cut], code + extra, code[cut:], ""):
        with pytest.raises(InvalidCode):
            VERIFIER.verify(text)


@given(campaign=campaigns, serial=serials)
def test_length_must_match_the_keys_algorithm(campaign: int, serial: int) -> None:
    """HMAC bytes padded to Ed25519 length, or Ed25519 bytes cut to HMAC length: InvalidCode."""
    hmac_raw = _b32decode(SIGNERS[Algorithm.HMAC_SHA256].sign(campaign, serial))
    ed_raw = _b32decode(SIGNERS[Algorithm.ED25519].sign(campaign, serial))
    for raw in (hmac_raw + bytes(48), ed_raw[:28]):
        with pytest.raises(InvalidCode):
            VERIFIER.verify(_b32encode(raw))


@given(code=codes(), data=st.data())
def test_nonzero_pad_bits_are_invalid(code: str, data: st.DataObject) -> None:
    """A set pad bit (1 in HMAC codes, 2 in Ed25519) is InvalidCode though the bytes are equal."""
    pad_bits = 1 if len(code) == HMAC_CODE_LEN else 2
    pad = data.draw(st.integers(1, (1 << pad_bits) - 1))
    last = ALPHABET[ALPHABET.index(code[-1]) | pad]
    mangled = code[:-1] + last
    assert _b32decode(mangled) == _b32decode(code)  # a lenient decoder would accept it
    with pytest.raises(InvalidCode):
        VERIFIER.verify(mangled)


@pytest.mark.parametrize("text", ["", "A" * HMAC_CODE_LEN, "@" * ED25519_CODE_LEN, "é" * 45])
def test_invalid_code_message_is_generic(text: str) -> None:
    """Every InvalidCode carries the same message, whatever was wrong."""
    with pytest.raises(InvalidCode) as caught:
        VERIFIER.verify(text)
    assert str(caught.value) == "invalid code"


@given(algorithm=algorithms, campaign=campaigns, serial=serials)
def test_claim_token_round_trip(algorithm: Algorithm, campaign: int, serial: int) -> None:
    """A claim token is 45 base32 characters and names its code under either algorithm."""
    token = SIGNERS[algorithm].claim_token(campaign, serial)
    assert len(token) == HMAC_CODE_LEN
    assert re.fullmatch("[A-Z2-7]+", token)
    assert VERIFIER.verify_claim_token(token) == CodeRef(campaign, serial, ACTIVE[algorithm].id)


@given(campaign=campaigns, serial=serials)
def test_claim_token_and_code_are_not_interchangeable(campaign: int, serial: int) -> None:
    """A claim token does not redeem, and a code is not a claim token."""
    signer = SIGNERS[Algorithm.HMAC_SHA256]
    with pytest.raises(InvalidCode):
        VERIFIER.verify(signer.claim_token(campaign, serial))
    with pytest.raises(InvalidCode):
        VERIFIER.verify_claim_token(signer.sign(campaign, serial))


@given(algorithm=algorithms, data=st.data())
def test_claim_token_bit_flip_is_invalid(algorithm: Algorithm, data: st.DataObject) -> None:
    """Flipping any bit of a claim token makes it InvalidCode."""
    raw = bytearray(_b32decode(SIGNERS[algorithm].claim_token(data.draw(campaigns), 7)))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(InvalidCode):
        VERIFIER.verify_claim_token(_b32encode(bytes(raw)))


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_claim_token_under_revoked_key_fails_closed(algorithm: Algorithm) -> None:
    """A valid claim token under a revoked key raises RevokedKey."""
    key = _with_status(KEYS[KeyStatus.REVOKED][algorithm], KeyStatus.ACTIVE)
    with pytest.raises(RevokedKey):
        VERIFIER.verify_claim_token(Signer(key).claim_token(3, 4))


@given(text=st.text())
def test_random_claim_token_is_only_ever_invalid(text: str) -> None:
    """Arbitrary text never crashes claim token verification."""
    with pytest.raises(InvalidCode):
        VERIFIER.verify_claim_token(text)


@given(campaign=campaigns, first=st.integers(0, MAX_SERIAL - 20), count=st.integers(0, 20))
def test_sign_range_equals_sign_per_serial(campaign: int, first: int, count: int) -> None:
    """sign_range yields exactly sign() for each serial of the range, in order."""
    signer = SIGNERS[Algorithm.HMAC_SHA256]
    expected = [signer.sign(campaign, serial) for serial in range(first, first + count)]
    assert list(signer.sign_range(campaign, first, count)) == expected


@pytest.mark.parametrize(
    ("campaign", "first", "count"),
    [(-1, 0, 1), (MAX_CAMPAIGN + 1, 0, 1), (0, -1, 1), (0, MAX_SERIAL, 2), (0, 0, -1)],
)
def test_sign_range_rejects_out_of_range_at_call(campaign: int, first: int, count: int) -> None:
    """Out-of-range arguments raise ValueError when sign_range is called, not when iterated."""
    with pytest.raises(ValueError, match="out of range"):
        SIGNERS[Algorithm.HMAC_SHA256].sign_range(campaign, first, count)


@pytest.mark.parametrize(
    ("campaign", "serial"), [(-1, 0), (MAX_CAMPAIGN + 1, 0), (0, -1), (0, MAX_SERIAL + 1)]
)
def test_sign_rejects_out_of_range(campaign: int, serial: int) -> None:
    """sign and claim_token refuse a campaign or serial that does not fit its field."""
    signer = SIGNERS[Algorithm.HMAC_SHA256]
    with pytest.raises(ValueError, match="out of range"):
        signer.sign(campaign, serial)
    with pytest.raises(ValueError, match="out of range"):
        signer.claim_token(campaign, serial)


def test_signer_refuses_token_and_revoked_keys() -> None:
    """A Signer is only built from a code key that is not revoked."""
    with pytest.raises(ValueError, match="not a code key"):
        Signer(RING.signing_key(Purpose.TOKEN, Algorithm.ED25519))
    with pytest.raises(ValueError, match="revoked"):
        Signer(KEYS[KeyStatus.REVOKED][Algorithm.HMAC_SHA256])


@given(code=codes())
def test_typed_form_shape(code: str) -> None:
    """The typed form is groups of five joined by dashes, ending in a one-character check group."""
    typed = to_typed(code)
    groups = typed.split("-")
    assert "".join(groups[:-1]) == code
    assert all(len(group) == 5 for group in groups[:-2])
    assert 1 <= len(groups[-2]) <= 5
    assert len(groups[-1]) == 1
    assert groups[-1] in ALPHABET


@given(code=codes())
def test_canonical_text_passes_through_parse_input(code: str) -> None:
    """parse_input returns canonical text unchanged."""
    assert parse_input(code) == code


@st.composite
def mangled_typed(draw: st.DrawFn) -> tuple[str, str]:
    """(code, its typed form as a person might enter it: any case, stray separators, 0/1/8)."""
    code = draw(codes())
    look_alike = {"O": "0", "I": "1", "B": "8"}
    out = []
    for char in to_typed(code):
        if char == "-":
            char = draw(st.sampled_from(["-", " ", "--", " - ", ""]))
        elif char in look_alike and draw(st.booleans()):
            char = look_alike[char]
        elif draw(st.booleans()):
            char = char.lower()
        out.append(char)
    return code, draw(st.sampled_from(["", " "])) + "".join(out) + draw(
        st.sampled_from(["", " ", "\n"])
    )


@given(case=mangled_typed())
def test_typed_form_round_trip(case: tuple[str, str]) -> None:
    """parse_input recovers the code from its typed form despite case, separators and 0/1/8."""
    code, typed = case
    assert parse_input(typed) == code
    assert VERIFIER.verify(parse_input(typed)).serial >= 0


@given(code=codes(), data=st.data())
def test_single_substitution_in_typed_form_is_caught(code: str, data: st.DataObject) -> None:
    """Replacing any one character of the typed form (check character included) is InvalidCode."""
    typed = to_typed(code)
    index = data.draw(st.sampled_from([i for i, char in enumerate(typed) if char != "-"]))
    replacement = data.draw(st.sampled_from(ALPHABET.replace(typed[index], "")))
    with pytest.raises(InvalidCode):
        parse_input(_substitute(typed, index, replacement))


@pytest.mark.parametrize("bad", ["", "ABC", "A" * 44, "A" * 47, "A" * 121, "A" * 124, "Ä" * 45])
def test_parse_input_rejects_impossible_lengths_and_non_ascii(bad: str) -> None:
    """parse_input refuses input that cannot be a code or a typed code."""
    with pytest.raises(InvalidCode):
        parse_input(bad)


@given(code=codes())
def test_parse_input_rejects_non_alphabet_with_check_character(code: str) -> None:
    """A typed form with a character outside the alphabet fails its check."""
    typed = to_typed(code).replace("-", "")
    with pytest.raises(InvalidCode):
        parse_input("@" + typed[1:])
