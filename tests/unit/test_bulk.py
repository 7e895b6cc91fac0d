"""Bulk export rows: byte-identical to the one-code-at-a-time reference, in order, bounded."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Iterator

import msgspec
import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrloop.codes import bulk
from qrloop.codes.bulk import csv_rows, jsonl_rows, rows_parallel
from qrloop.codes.format import MAX_CAMPAIGN, MAX_SERIAL, Signer, to_typed
from qrloop.codes.keyring import Algorithm, KeyEntry, KeyRing, KeyStatus, Purpose

RING = KeyRing()
KEYS = {algorithm: RING.generate(Purpose.CODE, algorithm) for algorithm in Algorithm}
HMAC_KEY = KEYS[Algorithm.HMAC_SHA256]
BASE = "https://qr.example/c/"

campaigns = st.integers(0, MAX_CAMPAIGN)
# Serial runs that cross the byte boundaries where the base32 text's prefix changes.
boundaries = st.sampled_from([0, 2**8, 2**16, 2**24, 2**32, 2**40, MAX_SERIAL + 1])
# Lone surrogates are excluded: a URL base is text that can be written out at all.
csv_bases = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=',"\r\n')).map(
    lambda text: BASE + text
)


def _reference(key: KeyEntry, campaign: int, first: int, count: int) -> Iterator[tuple[str, ...]]:
    signer = Signer(key)
    for serial in range(first, first + count):
        code = signer.sign(campaign, serial)
        yield code, to_typed(code), signer.claim_token(campaign, serial)


def _reference_csv(key: KeyEntry, campaign: int, first: int, count: int, base: str) -> bytes:
    rows = _reference(key, campaign, first, count)
    return "".join(f"{code},{typed},{base}{token}\n" for code, typed, token in rows).encode()


def _reference_json(key: KeyEntry, campaign: int, first: int, count: int, base: str) -> bytes:
    return b"".join(
        msgspec.json.encode({"code": code, "typed": typed, "claim_url": base + token}) + b"\n"
        for code, typed, token in _reference(key, campaign, first, count)
    )


@st.composite
def serial_ranges(draw: st.DrawFn, max_count: int) -> tuple[int, int]:
    """(first serial, count): anywhere, or straddling a byte boundary of the serial."""
    count = draw(st.integers(0, max_count))
    if draw(st.booleans()):
        first = draw(st.integers(0, MAX_SERIAL + 1 - count))
    else:
        edge = draw(boundaries)
        first = min(max(0, edge - draw(st.integers(0, count))), MAX_SERIAL + 1 - count)
    return first, count


@given(campaign=campaigns, serials=serial_ranges(600), base=csv_bases)
def test_hmac_csv_rows_equal_the_reference(
    campaign: int, serials: tuple[int, int], base: str
) -> None:
    """HMAC csv rows are byte for byte the f-string lines of sign, to_typed and claim_token."""
    first, count = serials
    assert csv_rows(HMAC_KEY, campaign, first, count, base) == _reference_csv(
        HMAC_KEY, campaign, first, count, base
    )


@settings(max_examples=30)
@given(campaign=campaigns, serials=serial_ranges(40), base=csv_bases)
def test_ed25519_csv_rows_equal_the_reference(
    campaign: int, serials: tuple[int, int], base: str
) -> None:
    """Ed25519 csv rows (122-character codes) are byte for byte the reference lines."""
    key = KEYS[Algorithm.ED25519]
    first, count = serials
    assert csv_rows(key, campaign, first, count, base) == _reference_csv(
        key, campaign, first, count, base
    )


@settings(max_examples=50)
@given(
    algorithm=st.sampled_from(list(Algorithm)),
    campaign=campaigns,
    serials=serial_ranges(40),
    base=st.text(st.characters(exclude_categories=("Cs",))),
)
def test_json_rows_equal_msgspec_of_the_reference(
    algorithm: Algorithm, campaign: int, serials: tuple[int, int], base: str
) -> None:
    """JSON lines equal msgspec's encoding of the reference values, whatever the base's text."""
    key = KEYS[algorithm]
    first, count = serials
    assert jsonl_rows(key, campaign, first, count, base) == _reference_json(
        key, campaign, first, count, base
    )


@given(
    secret=st.binary(max_size=64),
    domain=st.binary(max_size=100),
    headers=st.lists(st.binary(max_size=100), max_size=5),
)
def test_prekeyed_hmac_equals_the_hmac_module(
    secret: bytes, domain: bytes, headers: list[bytes]
) -> None:
    """The hand-keyed SHA-256 states give hmac.new's HMAC-SHA256 of domain + message, cut to 16."""
    key = bulk._HmacKey.of(secret, domain)
    assert bulk._hmac_tags(key, headers) == [
        hmac.new(secret, domain + header, hashlib.sha256).digest()[:16] for header in headers
    ]


def test_rows_spanning_several_batches_at_the_last_serials() -> None:
    """Full batches, a partial last batch and the highest serial are all encoded correctly."""
    count = 2 * bulk.BATCH + 5
    first = MAX_SERIAL + 1 - count
    assert csv_rows(HMAC_KEY, MAX_CAMPAIGN, first, count, BASE) == _reference_csv(
        HMAC_KEY, MAX_CAMPAIGN, first, count, BASE
    )


def test_no_rows_for_an_empty_range() -> None:
    """A count of zero gives empty output in every form."""
    assert csv_rows(HMAC_KEY, 1, 5, 0, BASE) == b""
    assert jsonl_rows(HMAC_KEY, 1, 5, 0, BASE) == b""
    assert list(rows_parallel(HMAC_KEY, 1, 5, 0, BASE, "csv", 2)) == []


@pytest.mark.parametrize(
    ("campaign", "first", "count"),
    [(-1, 0, 1), (MAX_CAMPAIGN + 1, 0, 1), (1, -1, 1), (1, MAX_SERIAL, 2), (1, 0, -1)],
)
def test_out_of_range_arguments_are_refused(campaign: int, first: int, count: int) -> None:
    """Campaigns and serial ranges outside the code format raise ValueError, as Signer does."""
    with pytest.raises(ValueError, match="out of range"):
        csv_rows(HMAC_KEY, campaign, first, count, BASE)
    with pytest.raises(ValueError, match="out of range"):
        rows_parallel(HMAC_KEY, campaign, first, count, BASE, "csv", 2)


def test_keys_that_may_not_sign_are_refused() -> None:
    """A revoked code key and a token key cannot sign rows."""
    ring = KeyRing()
    revoked = ring.set_status(
        ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256).id, KeyStatus.REVOKED
    )
    token = ring.generate(Purpose.TOKEN, Algorithm.ED25519)
    for key in (revoked, token):
        with pytest.raises(ValueError, match=f"key {key.id}"):
            csv_rows(key, 1, 0, 1, BASE)


def test_verify_only_keys_still_sign_rows() -> None:
    """Like Signer, rows may be derived again under a key demoted to verify-only."""
    ring = KeyRing()
    key = ring.set_status(
        ring.generate(Purpose.CODE, Algorithm.HMAC_SHA256).id, KeyStatus.VERIFY_ONLY
    )
    assert csv_rows(key, 3, 10, 3, BASE) == _reference_csv(key, 3, 10, 3, BASE)


@pytest.mark.parametrize("char", [",", '"', "\r", "\n"])
def test_csv_refuses_a_claim_base_that_would_need_quoting(char: str) -> None:
    """A claim base with a CSV special character would break the columns, so it is refused."""
    with pytest.raises(ValueError, match="claim_base"):
        csv_rows(HMAC_KEY, 1, 0, 1, BASE + char)


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_parallel_blocks_are_in_serial_order(processes: int, fmt: bulk.RowFormat) -> None:
    """Blocks have `block` rows (the last the rest) and join to exactly the whole range."""
    first, count, block = 2**16 - 700, 2_345, 500
    blocks = list(rows_parallel(HMAC_KEY, 9, first, count, BASE, fmt, processes, block))
    whole = csv_rows if fmt == "csv" else jsonl_rows
    assert b"".join(blocks) == whole(HMAC_KEY, 9, first, count, BASE)
    assert [part.count(b"\n") for part in blocks] == [500, 500, 500, 500, 345]


def test_parallel_ed25519_rows_equal_the_reference() -> None:
    """Pool processes sign Ed25519 rows with the key entry they were given."""
    key = KEYS[Algorithm.ED25519]
    blocks = rows_parallel(key, 4, 1_000, 30, BASE, "csv", 2, 7)
    assert b"".join(blocks) == _reference_csv(key, 4, 1_000, 30, BASE)


def test_the_pool_stays_at_most_two_blocks_per_process_ahead() -> None:
    """While the consumer holds its first block, at most 2 x processes blocks were submitted."""
    taken: list[tuple[int, int]] = []

    def blocks() -> Iterator[tuple[int, int]]:
        for start in range(0, 100 * 10, 10):
            taken.append((start, 10))
            yield start, 10

    rows = bulk._pooled(2, (HMAC_KEY, 1, "csv", BASE), blocks())
    with contextlib.closing(rows):
        next(rows)
        assert len(taken) <= 2 * 2 + 1  # the last one was drawn but waits to be submitted


def _pool_workers(before: frozenset[int] = frozenset()) -> list[psutil.Process]:
    """Our grandchildren (the fork server's children, pool workers) not in `before`: pools
    of earlier tests in this session may still be winding down."""
    me = os.getpid()
    return [
        p
        for p in psutil.Process(me).children(recursive=True)
        if p.ppid() != me and p.pid not in before
    ]


def _pids() -> frozenset[int]:
    return frozenset(p.pid for p in _pool_workers())


def _assert_gone(workers: list[psutil.Process]) -> None:
    """No waiting: the pool must have ended its processes before close() returned."""
    assert workers, "the pool had no worker processes to check"
    _, alive = psutil.wait_procs(workers, timeout=0)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_closing_the_iterator_early_shuts_the_pool_down() -> None:
    """close() after the first block cancels the queued blocks and ends the pool's processes."""
    before = _pids()
    rows = rows_parallel(HMAC_KEY, 1, 0, 1_000_000, BASE, "csv", 2, 1_000)
    next(rows)
    workers = _pool_workers(before)
    rows.close()
    _assert_gone(workers)


def test_an_error_in_the_consumer_shuts_the_pool_down() -> None:
    """A consumer failing inside contextlib.closing(...) leaves no pool process behind."""
    workers: list[psutil.Process] = []
    before = _pids()

    def consume() -> None:
        rows = rows_parallel(HMAC_KEY, 1, 0, 1_000_000, BASE, "json", 2, 1_000)
        with contextlib.closing(rows):
            for _ in rows:
                workers.extend(_pool_workers(before))
                raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        consume()
    _assert_gone(workers)
