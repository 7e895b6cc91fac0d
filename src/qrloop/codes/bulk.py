"""Export rows in bulk: every code of a serial range with its typed form and claim URL.

The rows are byte-identical to what `format.Signer.sign`, `format.to_typed` and
`Signer.claim_token` give one code at a time. They are cheaper because a batch of rows is
encoded together: at this size Python's per-operation cost, not SHA-256, is what a row costs,
so apart from the MACs of each row a batch takes a fixed few hundred operations, each over the
whole batch, instead of dozens of operations per row:

1. Tags: HMAC-SHA256 (RFC 2104) from two SHA-256 states keyed once, copied per row: the same
   MAC as `hmac.new(...).copy()` without the three Python-level method calls per MAC of the
   `hmac.HMAC` wrapper, which cost more than the hashing itself.
2. Base32: every row's signed bytes, zero-padded to a multiple of 5 bytes, form one stream of
   40-bit chunks. Strided copies give each chunk its own 64-bit slot; three mask-and-shift
   rounds over the batch as one integer then move every 5-bit group into a byte of its own (a
   lane), and `bytes.translate` turns lane values into the alphabet.
3. Columns: a strided slice of the batch's text is one character position of every row.
4. Check character (Luhn mod 32): each column, translated to Luhn digits, is read as one
   integer with a byte per row, and the columns are added, so one addition adds a digit of
   every row.
5. Lines: all lines of an export have the same width, so each column goes into a template
   line repeated n times with one strided slice assignment.

This module is the vectorised twin of `format` and shares its private constants.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import chain, repeat
from typing import Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qrloop.codes.format import (
    _CLAIM_DOMAIN,
    _CODE_DOMAIN,
    ED25519_CODE_LEN,
    HEADER_LEN,
    HMAC_CODE_LEN,
    HMAC_TAG_LEN,
    MAX_SERIAL,
    _header_prefix,
    to_typed,
)
from qrloop.codes.keyring import Algorithm, KeyEntry, KeyStatus, Purpose
from qrloop.parallel import process_pool

RowFormat = Literal["csv", "json"]

# Rows encoded together. A batch costs a few hundred Python-level operations whatever its
# size, plus C work in proportion to it: a few thousand rows amortise the former while the
# batch's integers (about 50 bytes a row) still fit in the CPU's caches.
BATCH = 2048

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# Lane value -> character. Only 0..31 occur; the rest of the table is never read.
_TO_TEXT = bytes(_ALPHABET[value % 32] for value in range(256))
# Character -> its Luhn mod 32 digit, as it is and doubled; other bytes never occur.
_VALUE = bytes.maketrans(_ALPHABET, bytes(range(32)))
_DOUBLED = bytes.maketrans(
    _ALPHABET, bytes((2 * value) // 32 + (2 * value) % 32 for value in range(32))
)
# Row sum mod 32 -> check character.
_CHECK = bytes(_ALPHABET[-value % 32] for value in range(256))

_SHA256_BLOCK = 64
_HMAC_DATA_LEN = HEADER_LEN + HMAC_TAG_LEN  # 28
_ED25519_DATA_LEN = HEADER_LEN + 64  # 76


@dataclass(frozen=True, slots=True)
class _Shape:
    """How signed bytes of one length map to base32 lanes."""

    data_len: int  # signed bytes: header and tag

    @property
    def pad(self) -> bytes:
        """Zero bytes completing the last 40-bit chunk; they are also the text's pad bits."""
        return bytes(-self.data_len % 5)

    @property
    def lanes(self) -> int:
        """Lanes per row: eight per 40-bit chunk, the text's characters first."""
        return 8 * math.ceil(self.data_len / 5)

    @property
    def text_len(self) -> int:
        """Characters of the unpadded base32 text."""
        return math.ceil(self.data_len * 8 / 5)


_HMAC_SHAPE = _Shape(_HMAC_DATA_LEN)
_ED25519_SHAPE = _Shape(_ED25519_DATA_LEN)
assert _HMAC_SHAPE.text_len == HMAC_CODE_LEN
assert _ED25519_SHAPE.text_len == ED25519_CODE_LEN


@lru_cache(maxsize=1)
def _spread_masks() -> tuple[tuple[int, int, int], ...]:
    """(keep, move, shift) per round; a 40-bit chunk in a 64-bit slot ends as 8 lanes.

    Round one moves the chunk's high 20 bits up to the slot's upper half, round two the high
    10 bits of each half to its upper quarter, round three the high 5 bits of each quarter to
    its upper byte. Masks span the longest batch; `&` with a longer mask costs only the
    shorter operand.
    """
    slots = BATCH * _ED25519_SHAPE.lanes // 8
    rounds = (
        (0x0000_0000_000F_FFFF, 0x0000_00FF_FFF0_0000, 12),
        (0x0000_03FF_0000_03FF, 0x000F_FC00_000F_FC00, 6),
        (0x001F_001F_001F_001F, 0x03E0_03E0_03E0_03E0, 3),
    )
    return tuple(
        (_repeat64(keep, slots), _repeat64(move, slots), shift) for keep, move, shift in rounds
    )


def _repeat64(pattern: int, count: int) -> int:
    """`count` copies of a 64-bit pattern side by side."""
    return int.from_bytes(pattern.to_bytes(8, "big") * count, "big")


def _lanes(stream: bytes) -> bytes:
    """One byte per base32 digit of a stream made of 5-byte chunks."""
    slots = bytearray(len(stream) // 5 * 8)
    for i in range(5):
        slots[3 + i :: 8] = stream[i::5]
    spread = int.from_bytes(slots, "big")
    for keep, move, shift in _spread_masks():
        spread = (spread & keep) | ((spread & move) << shift)
    return spread.to_bytes(len(slots), "big")


def _check_chars(columns: list[bytes]) -> bytes:
    """The typed form's check character of every row, from the text's character columns.

    Each column, mapped to Luhn digits, is one integer with a byte per row; adding them adds
    every row's digits at once. A digit is at most 31, so masking every row's byte to its
    low 5 bits (the sum mod 32) after every seven columns keeps any byte from carrying into
    the next row's.
    """
    total = 0
    for k, column in enumerate(columns):
        doubled = (len(columns) - 1 - k) % 2 == 0  # the rightmost character is doubled
        total += int.from_bytes(column.translate(_DOUBLED if doubled else _VALUE), "big")
        if k % 7 == 6:
            total &= _mod32_mask()
    sums = (total & _mod32_mask()).to_bytes(len(columns[0]), "big")
    return sums.translate(_CHECK)


@lru_cache(maxsize=1)
def _mod32_mask() -> int:
    """0x1F in every byte of the longest batch's column."""
    return int.from_bytes(b"\x1f" * BATCH, "big")


@dataclass(frozen=True, slots=True)
class _Layout:
    """A line with placeholder texts, and where each text starts in it."""

    template: bytes
    code_at: int
    typed_at: int
    check_at: int
    claim_at: int


def _layout(fmt: RowFormat, code_len: int, claim_base: str) -> _Layout:
    """The line for an all-"A" code and claim token (whose check character is "A" too)."""
    typed = to_typed("A" * code_len)
    if fmt == "csv":
        if any(char in claim_base for char in ',"\r\n'):
            raise ValueError("claim_base must not contain a comma, quote or line break")
        head, middle, tail = b"", b",", b"," + claim_base.encode()
        end = b"\n"
    else:
        # msgspec escapes the base; the token needs no escaping, so it goes before the quote.
        head, middle, tail = b'{"code":"', b'","typed":"', b'","claim_url":'
        tail += msgspec.json.encode(claim_base)[:-1]
        end = b'"}\n'
    code_at = len(head)
    typed_at = code_at + code_len + len(middle)
    claim_at = typed_at + len(typed) + len(tail)
    template = b"".join(
        [head, b"A" * code_len, middle, typed.encode(), tail, b"A" * HMAC_CODE_LEN, end]
    )
    return _Layout(template, code_at, typed_at, typed_at + len(typed) - 1, claim_at)


CSV_HEADER = b"code,typed,claim_url\n"  # the first line of every csv export


def csv_row_bytes(algorithm: Algorithm, claim_base: str) -> int:
    """The length of every csv export row of a code of this algorithm."""
    code_len = ED25519_CODE_LEN if algorithm is Algorithm.ED25519 else HMAC_CODE_LEN
    return len(_layout("csv", code_len, claim_base).template)


@dataclass(frozen=True, slots=True)
class _HmacKey:
    """HMAC-SHA256 of one key and domain separator, up to the per-message part (RFC 2104)."""

    inner: hashlib._Hash  # after (key ^ ipad) and the domain separator
    outer: hashlib._Hash  # after (key ^ opad)

    @classmethod
    def of(cls, secret: bytes, domain: bytes) -> _HmacKey:
        """Keyed states; the secret is shorter than a block, so it is zero-padded, not hashed."""
        assert len(secret) <= _SHA256_BLOCK
        block = secret.ljust(_SHA256_BLOCK, b"\0")
        inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        inner.update(domain)
        return cls(inner, hashlib.sha256(bytes(byte ^ 0x5C for byte in block)))


def _hmac_tags(key: _HmacKey, headers: list[bytes]) -> list[bytes]:
    """The truncated HMAC tag of each header."""
    tags = []
    inner_copy, outer_copy = key.inner.copy, key.outer.copy
    for header in headers:
        inner = inner_copy()
        inner.update(header)
        outer = outer_copy()
        outer.update(inner.digest())
        tags.append(outer.digest()[:HMAC_TAG_LEN])
    return tags


def _ed25519_tags(private: Ed25519PrivateKey, headers: list[bytes]) -> Iterator[bytes]:
    """The Ed25519 signature of each header, under the same domain separator as `format`."""
    return map(private.sign, map(_CODE_DOMAIN.__add__, headers))


def _check_key(key: KeyEntry) -> None:
    if key.purpose is not Purpose.CODE:
        raise ValueError(f"key {key.id} is not a code key")
    if key.status is KeyStatus.REVOKED:
        raise ValueError(f"key {key.id} is revoked")


def _check_range(first_serial: int, count: int) -> None:
    if count < 0 or not 0 <= first_serial <= MAX_SERIAL + 1 - count:
        raise ValueError(f"serials out of range 0..{MAX_SERIAL}")


class _Encoder:
    """Rows of one key, campaign and line format; keyed state and layout are built once."""

    __slots__ = ("_claim", "_code_tags", "_layout", "_prefix", "_shape")

    def __init__(self, key: KeyEntry, campaign_id: int, fmt: RowFormat, claim_base: str) -> None:
        _check_key(key)
        self._prefix = _header_prefix(key.id, campaign_id)
        self._claim = _HmacKey.of(key.secret, _CLAIM_DOMAIN)
        self._code_tags: Callable[[list[bytes]], Iterable[bytes]]
        if key.algorithm is Algorithm.HMAC_SHA256:
            self._shape = _HMAC_SHAPE
            self._code_tags = partial(_hmac_tags, _HmacKey.of(key.secret, _CODE_DOMAIN))
        else:
            self._shape = _ED25519_SHAPE
            self._code_tags = partial(_ed25519_tags, key.ed25519_private_key())
        self._layout = _layout(fmt, self._shape.text_len, claim_base)

    def rows(self, first_serial: int, count: int) -> bytes:
        """The lines for serials first_serial .. first_serial + count - 1."""
        _check_range(first_serial, count)
        end = first_serial + count
        return b"".join(
            self._batch(start, min(BATCH, end - start)) for start in range(first_serial, end, BATCH)
        )

    def _batch(self, first_serial: int, count: int) -> bytearray:
        start = self._prefix | first_serial  # serials never reach the prefix's bits
        headers = list(map(int.to_bytes, range(start, start + count), repeat(HEADER_LEN)))
        code = _columns(_stream(headers, self._code_tags(headers), self._shape.pad), self._shape)
        claim = _columns(
            _stream(headers, _hmac_tags(self._claim, headers), _HMAC_SHAPE.pad), _HMAC_SHAPE
        )
        return self._fill(code, _check_chars(code), claim, count)

    def _fill(self, code: list[bytes], checks: bytes, claim: list[bytes], count: int) -> bytearray:
        """Lines from the texts' character columns and the check characters."""
        layout = self._layout
        width = len(layout.template)
        lines = bytearray(layout.template * count)
        for k, column in enumerate(code):
            lines[layout.code_at + k :: width] = column
            lines[layout.typed_at + k + k // 5 :: width] = column
        lines[layout.check_at :: width] = checks
        for k, column in enumerate(claim):
            lines[layout.claim_at + k :: width] = column
        return lines


def _columns(stream: bytes, shape: _Shape) -> list[bytes]:
    """Column k holds character k of every row's base32 text."""
    text = _lanes(stream).translate(_TO_TEXT)
    return [text[k :: shape.lanes] for k in range(shape.text_len)]


def _stream(headers: list[bytes], tags: Iterable[bytes], pad: bytes) -> bytes:
    """Every row's signed bytes and zero padding, back to back."""
    return b"".join(chain.from_iterable(zip(headers, tags, repeat(pad))))


def csv_rows(
    key: KeyEntry, campaign_id: int, first_serial: int, count: int, claim_base: str
) -> bytes:
    """`code,typed,claim_url` lines (no header, "\\n" line ends) for a range of serials."""
    return _Encoder(key, campaign_id, "csv", claim_base).rows(first_serial, count)


def jsonl_rows(
    key: KeyEntry, campaign_id: int, first_serial: int, count: int, claim_base: str
) -> bytes:
    """One `{"code","typed","claim_url"}` JSON object per line for a range of serials."""
    return _Encoder(key, campaign_id, "json", claim_base).rows(first_serial, count)


def rows_parallel(
    key: KeyEntry,
    campaign_id: int,
    first_serial: int,
    count: int,
    claim_base: str,
    fmt: RowFormat,
    processes: int,
    block: int = 50_000,
) -> Generator[bytes, None, None]:
    """The rows in blocks of `block` serials, in serial order, from `processes` processes.

    Arguments are checked at the call. With processes > 1 the blocks come from a pool of
    "forkserver" processes (fork is unsafe in the threaded processes that call this), at most
    `2 * processes` blocks ahead of the consumer; closing the iterator early shuts the pool
    down. processes == 1 computes each block in the caller's process when it is asked for.
    """
    if processes < 1 or block < 1:
        raise ValueError("processes and block must be at least 1")
    encoder = _Encoder(key, campaign_id, fmt, claim_base)
    _check_range(first_serial, count)
    blocks = _blocks(first_serial, count, block)
    if processes == 1:
        return (encoder.rows(start, size) for start, size in blocks)
    return _pooled(processes, (key, campaign_id, fmt, claim_base), blocks)


def _blocks(first_serial: int, count: int, block: int) -> Iterator[tuple[int, int]]:
    """(first serial, size) of each block, in order."""
    end = first_serial + count
    for start in range(first_serial, end, block):
        yield start, min(block, end - start)


def _pooled(
    processes: int,
    encoder_args: tuple[KeyEntry, int, RowFormat, str],
    blocks: Iterator[tuple[int, int]],
) -> Generator[bytes, None, None]:
    pool = process_pool(processes, _start_worker, encoder_args)
    try:
        pending: deque[Future[bytes]] = deque()
        for start, size in blocks:
            if len(pending) == 2 * processes:
                yield pending.popleft().result()
            pending.append(pool.submit(_worker_rows, start, size))
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_worker_encoder: _Encoder | None = None


def _start_worker(key: KeyEntry, campaign_id: int, fmt: RowFormat, claim_base: str) -> None:
    global _worker_encoder  # one encoder per pool process, built before its first block
    _worker_encoder = _Encoder(key, campaign_id, fmt, claim_base)


def _worker_rows(first_serial: int, count: int) -> bytes:
    """A block's rows, in a pool process."""
    assert _worker_encoder is not None
    return _worker_encoder.rows(first_serial, count)
