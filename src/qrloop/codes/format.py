"""Code format v1: signing, strict verification, claim tokens and the typed form.

Bytes: version(1) | key_id(1) | campaign(4) | serial(6) | tag, all big-endian; the first
12 bytes are the header. The text form is RFC 4648 base32, uppercase, unpadded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from qrloop.codes.keyring import Algorithm, KeyEntry, KeyRing, KeyStatus, Purpose

VERSION = 1
HEADER_LEN = 12
HMAC_TAG_LEN = 16
MAX_CAMPAIGN = 2**32 - 1
MAX_SERIAL = 2**48 - 1
HMAC_CODE_LEN = 45  # 28 bytes = 224 bits in 45 characters: 1 zero pad bit
ED25519_CODE_LEN = 122  # 76 bytes = 608 bits in 122 characters: 2 zero pad bits

_CODE_DOMAIN = b"qrloop/code/v1\x00"
_CLAIM_DOMAIN = b"qrloop/claim/v1\x00"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

# text length -> (decoded byte length, pad bits)
_LAYOUTS = {HMAC_CODE_LEN: (28, 1), ED25519_CODE_LEN: (76, 2)}


def _to_python_base32() -> bytes:
    # int(x, 32) reads the digits 0-9a-v; every other byte becomes "z" so that int() rejects
    # it. int() would otherwise accept whitespace, "_", signs and lowercase.
    table = bytearray(b"z" * 256)
    for char, digit in zip(_ALPHABET.encode(), b"0123456789abcdefghijklmnopqrstuv", strict=True):
        table[char] = digit
    return bytes(table)


_TO_PYTHON_BASE32 = _to_python_base32()
# Typed input is case-insensitive, and the digits base32 lacks read as their look-alikes.
_TYPED_NORMALISER = bytes.maketrans(
    b"abcdefghijklmnopqrstuvwxyz018", b"ABCDEFGHIJKLMNOPQRSTUVWXYZOIB"
)
_TYPED_SEPARATORS = b" -\t\r\n"
# Luhn mod 32: the value of each character, and the digit sum of its doubled value.
_LUHN_VALUE = {char: value for value, char in enumerate(_ALPHABET)}
_LUHN_DOUBLED = {char: (2 * value) // 32 + (2 * value) % 32 for value, char in enumerate(_ALPHABET)}


class InvalidCode(Exception):
    """Malformed text or bad tag; deliberately never says which."""

    def __init__(self) -> None:
        super().__init__("invalid code")


class RevokedKey(Exception):
    """The tag is valid, but under a revoked key."""


class RetiredKey(Exception):
    """The tag is valid, but under a retired key: its codes have lapsed."""


@dataclass(frozen=True, slots=True)
class CodeRef:
    """What a valid code identifies."""

    campaign_id: int
    serial: int
    key_id: int


def _header_prefix(key_id: int, campaign_id: int) -> int:
    if not 0 <= campaign_id <= MAX_CAMPAIGN:
        raise ValueError(f"campaign id out of range 0..{MAX_CAMPAIGN}")
    return (VERSION << 88) | (key_id << 80) | (campaign_id << 48)


def _encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def _decode(text: str) -> bytes:
    """Strictly decode a code-length text; anything non-canonical is InvalidCode."""
    layout = _LAYOUTS.get(len(text))
    if layout is None:
        raise InvalidCode
    size, pad_bits = layout
    try:
        # encode() refuses non-ASCII, which int() would read as digits of other scripts.
        value = int(text.encode("ascii").translate(_TO_PYTHON_BASE32), 32)
    except ValueError:  # UnicodeEncodeError included
        raise InvalidCode from None
    if value & ((1 << pad_bits) - 1):
        raise InvalidCode
    return (value >> pad_bits).to_bytes(size, "big")


def _hmac_tag(keyed: hmac.HMAC, header: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(header)
    return mac.digest()[:HMAC_TAG_LEN]


def _keyed(secret: bytes, domain: bytes) -> hmac.HMAC:
    return hmac.new(secret, domain, hashlib.sha256)


class Signer:
    """Signs codes and claim tokens with one code key; all keyed state is built once."""

    __slots__ = ("_claim", "_key_id", "_tag")

    def __init__(self, key: KeyEntry) -> None:
        if key.purpose is not Purpose.CODE:
            raise ValueError(f"key {key.id} is not a code key")
        if key.status is KeyStatus.REVOKED:
            raise ValueError(f"key {key.id} is revoked")
        self._key_id = key.id
        self._claim = _keyed(key.secret, _CLAIM_DOMAIN)
        self._tag: Callable[[bytes], bytes]
        if key.algorithm is Algorithm.HMAC_SHA256:
            self._tag = partial(_hmac_tag, _keyed(key.secret, _CODE_DOMAIN))
        else:
            private = key.ed25519_private_key()
            self._tag = lambda header: private.sign(_CODE_DOMAIN + header)

    def sign(self, campaign_id: int, serial: int) -> str:
        """The code text for (campaign, serial)."""
        header = self._header(campaign_id, serial)
        return _encode(header + self._tag(header))

    def sign_range(self, campaign_id: int, first_serial: int, count: int) -> Iterator[str]:
        """Codes for serials first_serial .. first_serial + count - 1, in order."""
        # Checked here, not in the generator, so bad arguments fail at the call.
        prefix = _header_prefix(self._key_id, campaign_id)
        if count < 0 or not 0 <= first_serial <= MAX_SERIAL + 1 - count:
            raise ValueError(f"serials out of range 0..{MAX_SERIAL}")
        return self._sign_serials(prefix, range(first_serial, first_serial + count))

    def claim_token(self, campaign_id: int, serial: int) -> str:
        """A 45-character token naming the code without being redeemable."""
        header = self._header(campaign_id, serial)
        return _encode(header + _hmac_tag(self._claim, header))

    def _header(self, campaign_id: int, serial: int) -> bytes:
        if not 0 <= serial <= MAX_SERIAL:
            raise ValueError(f"serial out of range 0..{MAX_SERIAL}")
        return (_header_prefix(self._key_id, campaign_id) | serial).to_bytes(HEADER_LEN, "big")

    def _sign_serials(self, prefix: int, serials: range) -> Iterator[str]:
        tag = self._tag
        for serial in serials:
            header = (prefix | serial).to_bytes(HEADER_LEN, "big")
            yield _encode(header + tag(header))


@dataclass(frozen=True, slots=True)
class _VerifyKey:
    status: KeyStatus
    code_len: int
    check_tag: Callable[[bytes, bytes], bool]
    claim: hmac.HMAC


def _hmac_check(keyed: hmac.HMAC, header: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(_hmac_tag(keyed, header), tag)


def _ed25519_check(public_key: Ed25519PublicKey, header: bytes, signature: bytes) -> bool:
    try:
        public_key.verify(signature, _CODE_DOMAIN + header)
    except InvalidSignature:
        return False
    return True


def _verify_key(entry: KeyEntry) -> _VerifyKey:
    check_tag: Callable[[bytes, bytes], bool]
    if entry.algorithm is Algorithm.HMAC_SHA256:
        check_tag = partial(_hmac_check, _keyed(entry.secret, _CODE_DOMAIN))
        code_len = HMAC_CODE_LEN
    else:
        check_tag = partial(_ed25519_check, entry.ed25519_public_key())
        code_len = ED25519_CODE_LEN
    return _VerifyKey(entry.status, code_len, check_tag, _keyed(entry.secret, _CLAIM_DOMAIN))


class Verifier:
    """Verifies codes and claim tokens against every code key of a ring, whatever its status.

    Keys of every status are kept so that a valid tag under a revoked or retired key can be
    told apart from a forgery.
    """

    __slots__ = ("_keys",)

    def __init__(self, ring: KeyRing) -> None:
        self._keys = {
            entry.id: _verify_key(entry)
            for entry in ring.entries()
            if entry.purpose is Purpose.CODE
        }

    def verify(self, text: str) -> CodeRef:
        """Check a canonical code text and say what it names."""
        data, key = self._checked(text)
        return _code_ref(data, key.status)

    def identify(self, text: str) -> CodeRef:
        """What a canonical code text names, once its tag checks out, whatever its key's status
        is now: a code signed under a key since retired or revoked still has a history."""
        data, _ = self._checked(text)
        return _ref(data)

    def _checked(self, text: str) -> tuple[bytes, _VerifyKey]:
        data = _decode(text)
        key = self._key(data)
        if key.code_len != len(text) or not key.check_tag(data[:HEADER_LEN], data[HEADER_LEN:]):
            raise InvalidCode
        return data, key

    def verify_claim_token(self, text: str) -> CodeRef:
        """Check a claim token and say which code it names."""
        if len(text) != HMAC_CODE_LEN:
            raise InvalidCode
        data = _decode(text)
        key = self._key(data)
        header = data[:HEADER_LEN]
        if not hmac.compare_digest(_hmac_tag(key.claim, header), data[HEADER_LEN:]):
            raise InvalidCode
        return _code_ref(data, key.status)

    def _key(self, data: bytes) -> _VerifyKey:
        key = self._keys.get(data[1])
        if key is None or data[0] != VERSION:
            raise InvalidCode
        return key


def _code_ref(data: bytes, status: KeyStatus) -> CodeRef:
    # Only reached with a valid tag, so these answers reveal nothing to a forger.
    if status is KeyStatus.REVOKED:
        raise RevokedKey(f"key {data[1]} is revoked")
    if status is KeyStatus.RETIRED:
        raise RetiredKey(f"key {data[1]} is retired")
    return _ref(data)


def _ref(data: bytes) -> CodeRef:
    return CodeRef(
        campaign_id=int.from_bytes(data[2:6], "big"),
        serial=int.from_bytes(data[6:HEADER_LEN], "big"),
        key_id=data[1],
    )


def _check_char(payload: str) -> str:
    """Luhn mod 32 check character (rightmost payload character doubled)."""
    try:
        total = sum(map(_LUHN_DOUBLED.__getitem__, payload[::-2]))
        total += sum(map(_LUHN_VALUE.__getitem__, payload[-2::-2]))
    except KeyError:
        raise InvalidCode from None
    return _ALPHABET[-total % 32]


def to_typed(text: str) -> str:
    """The typed form: groups of five joined by "-", then the check character as a last group."""
    groups = [text[i : i + 5] for i in range(0, len(text), 5)]
    return "-".join([*groups, _check_char(text)])


def parse_input(raw: str) -> str:
    """Canonical text from a scan or a typed code; the result still needs Verifier.verify.

    Ignores case, spaces, dashes and line breaks, and reads 0/1/8 as O/I/B. A trailing check
    character (canonical length + 1) is verified and removed.
    """
    if not raw.isascii():
        raise InvalidCode
    text = raw.encode("ascii").translate(_TYPED_NORMALISER, _TYPED_SEPARATORS).decode("ascii")
    if len(text) in _LAYOUTS:
        return text
    if len(text) - 1 not in _LAYOUTS:
        raise InvalidCode
    payload, check = text[:-1], text[-1]
    if _check_char(payload) != check:
        raise InvalidCode
    return payload
