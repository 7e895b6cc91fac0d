"""Cursors: what a page hands out reads back, and anything else is a 400."""

from __future__ import annotations

import pytest

from qrloop.errors import Problem, Reason
from qrloop.pagination import decode_cursor, encode_cursor, newest_first, page_of, start_below


def test_a_cursor_reads_back_as_the_key_it_was_made_from() -> None:
    """The cursor of a row key decodes to that key, typed as the list declares it."""
    cursor = encode_cursor(("2026-12-02T05:00:00+00:00", 17))
    assert decode_cursor(cursor, str, int) == ("2026-12-02T05:00:00+00:00", 17)


def test_no_cursor_means_the_first_page() -> None:
    """An absent or empty cursor names no key, so the list starts at its newest row."""
    assert decode_cursor(None, int) is None
    assert decode_cursor("", int) is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        encode_cursor(("seventeen",)),  # a string where the list keys by integer
        encode_cursor((1, 2)),  # two parts for a one-part key
        encode_cursor((2**63,)),  # beyond bigint
        "W3RydWVd",  # [true]
        "e30",  # {}
    ],
)
def test_a_cursor_this_list_did_not_give_out_is_a_bad_request(cursor: str) -> None:
    """Tampered or foreign cursors are refused with bad_request, never passed to SQL."""
    with pytest.raises(Problem) as refused:
        decode_cursor(cursor, int)
    assert refused.value.reason is Reason.BAD_REQUEST


def test_the_extra_row_decides_whether_there_is_a_next_page() -> None:
    """limit + 1 rows give a page of `limit` with a cursor at its last row; fewer give none."""
    rows = [5, 4, 3]
    more = page_of(rows, 2, lambda row: (row,))
    assert more.items == [5, 4]
    assert decode_cursor(more.next_cursor, int) == (4,)
    last = page_of(rows[:2], 2, lambda row: (row,))
    assert last.items == [5, 4]
    assert last.next_cursor is None


def test_a_newest_first_list_starts_above_every_id_then_below_its_cursor() -> None:
    """The first page's bound lies above every bigint id (so `id < bound` holds for all), and
    a next page starts below the id its cursor names."""
    assert start_below(None) == 2**63 - 1
    assert start_below(encode_cursor((42,))) == 42


def test_a_newest_first_page_is_cursored_by_its_key_column() -> None:
    """Rows become items through `out`; the cursor names the last item's key column (pools
    page by their creation sequence, not their text id)."""
    rows = [{"id": "c", "seq": 9}, {"id": "b", "seq": 7}, {"id": "a", "seq": 4}]
    page = newest_first(rows, 2, lambda row: row["id"], key_column="seq")
    assert page.items == ["c", "b"]
    assert start_below(page.next_cursor) == 7
