"""Cursor pagination for every list: keyset pages, newest first, behind an opaque cursor.

A page is read as "rows after this key, in key order, limit + 1 of them". The extra row only
says whether there is a next page. A cursor is the key of a page's last row, so rows inserted
while a client pages through a list appear on no page the client has yet to read out of order,
and none is skipped or repeated (offsets would shift under inserts).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar.params import Parameter

from qrloop.errors import Problem, Reason

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

Key = tuple[int | str, ...]
T = TypeVar("T")

Limit = Annotated[
    int,
    Parameter(ge=1, le=MAX_LIMIT, description=f"Items per page, at most {MAX_LIMIT}"),
]
Cursor = Annotated[
    str | None,
    Parameter(
        required=False,
        max_length=400,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="`next_cursor` of the previous page; absent for the first page",
    ),
]


class Page(msgspec.Struct, Generic[T]):
    """One page of a list; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None

    @classmethod
    def example_of(cls, item: Any) -> dict[str, Any]:
        """A page's example for the API's documentation, around the example of its items."""
        return {"items": [item], "next_cursor": encode_cursor((1,))}


def encode_cursor(key: Key) -> str:
    """The opaque cursor for a row key (URL-safe, no padding)."""
    raw = msgspec.json.encode(list(key))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, *types: type[int] | type[str]) -> Key | None:
    """The key a cursor names, checked against the list's key types; 400 if it is not one."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = msgspec.json.decode(raw, type=list[int | str])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        values = None
    if values is None or len(values) != len(types):
        raise Problem(Reason.BAD_REQUEST, "cursor is not one this list gave out")
    for value, kind in zip(values, types, strict=True):
        if type(value) is not kind or (kind is int and not -(2**63) <= value < 2**63):  # type: ignore[operator]
            raise Problem(Reason.BAD_REQUEST, "cursor is not one this list gave out")
    return tuple(values)


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], Key]) -> Page[T]:
    """The page from `limit + 1` rows read in key order: the extra row means there is more."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(key(items[-1])) if more else None)
