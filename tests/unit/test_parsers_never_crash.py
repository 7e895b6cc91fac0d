"""Property: the parsers of what a stranger sends (a scanned or typed code, a claim token)
answer a valid reference or InvalidCode, and never raise anything else, whatever the input.

Inputs are drawn near the valid ones (typed forms and tokens with characters swapped, added,
dropped, re-cased or replaced by look-alikes and non-ASCII), where a parser's edge cases are,
as well as arbitrary text and bytes."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from qrloop.codes.format import (
    ED25519_CODE_LEN,
    HMAC_CODE_LEN,
    MAX_CAMPAIGN,
    MAX_SERIAL,
    CodeRef,
    InvalidCode,
    Signer,
    Verifier,
    parse_input,
    to_typed,
)
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose

RING = KeyRing()
SIGNERS = [Signer(RING.generate(Purpose.CODE, algorithm)) for algorithm in Algorithm]
VERIFIER = Verifier(RING)  # active keys only: a valid tag is a reference, never a key refusal

# What a scanner or a person adds: separators, look-alikes, other cases, and what they should not.
_NEAR = st.sampled_from(list("-  \t\r\n018OIBabz=_/+.\x00é€\u200b")) | st.characters()


@st.composite
def _signed(draw: st.DrawFn) -> tuple[Signer, int, int]:
    signer = draw(st.sampled_from(SIGNERS))
    return signer, draw(st.integers(0, MAX_CAMPAIGN)), draw(st.integers(0, MAX_SERIAL))


@st.composite
def _mangled(draw: st.DrawFn, text: str) -> str:
    """`text` with a few characters replaced, inserted, dropped or re-cased."""
    chars = list(text)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(chars)))
        edit = draw(st.sampled_from(["replace", "insert", "drop", "case"]))
        if edit == "insert" or at == len(chars):
            chars.insert(at, draw(_NEAR))
        elif edit == "replace":
            chars[at] = draw(_NEAR)
        elif edit == "drop":
            del chars[at]
        else:
            chars[at] = chars[at].swapcase()
    return "".join(chars)


@st.composite
def _near_codes(draw: st.DrawFn) -> str:
    signer, campaign, serial = draw(_signed())
    code = signer.sign(campaign, serial)
    return draw(_mangled(draw(st.sampled_from([code, to_typed(code), to_typed(code).lower()]))))


@st.composite
def _near_claim_tokens(draw: st.DrawFn) -> str:
    signer, campaign, serial = draw(_signed())
    return draw(_mangled(signer.claim_token(campaign, serial)))


_ANY_TEXT = st.text() | st.binary().map(lambda raw: raw.decode("latin-1"))


def _reference_or_invalid(parse: Callable[[str], CodeRef], text: str) -> None:
    try:
        found = parse(text)
    except InvalidCode:
        return
    assert isinstance(found, CodeRef)


@given(text=_near_codes() | _ANY_TEXT)
def test_a_scanned_or_typed_code_is_a_reference_or_invalid(text: str) -> None:
    """parse_input then verify, as the till reads a code: a CodeRef or InvalidCode only."""
    _reference_or_invalid(lambda raw: VERIFIER.verify(parse_input(raw)), text)


@given(text=_near_codes() | _ANY_TEXT)
def test_the_typed_form_parser_gives_text_or_invalid(text: str) -> None:
    """parse_input alone: canonical text (that still needs verifying) or InvalidCode only."""
    try:
        canonical = parse_input(text)
    except InvalidCode:
        return
    assert canonical.isascii() and len(canonical) in (HMAC_CODE_LEN, ED25519_CODE_LEN)


@given(text=_near_claim_tokens() | _ANY_TEXT)
def test_a_claim_token_is_a_reference_or_invalid(text: str) -> None:
    """verify_claim_token, as a claim link is read: a CodeRef or InvalidCode only."""
    _reference_or_invalid(VERIFIER.verify_claim_token, text)
