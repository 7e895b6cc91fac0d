"""Cursor pagination for every list: keyset pages, newest first, behind an opaque cursor.

A page is read as "rows after this key, in key order, limit + 1 of them". The extra row only
says whether there is a next page. A cursor is the key of a page's last row, so rows inserted
while a client pages through a list appear on no page the client has yet to read out of order,
and none is skipped or repeated (offsets would shift under inserts).

Most lists are newest first by a bigint id: `WHERE owner = $1 AND id < $2 ORDER BY id DESC
LIMIT $3`, over an index on (owner, id). The first page passes a bound above every id rather
than NULL: under a prepared statement's generic plan, `($2 IS NULL OR id < $2)` is no index
condition, and every page would read the index from the newest row again.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, Protocol, TypeVar

import asyncpg
import msgspec
from litestar.params import KwargDefinition, Parameter

from qrloop.errors import Problem, Reason

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# The first page of a newest-first list starts below this: above every id a bigint identity
# column hands out.
_ABOVE_EVERY_ID = 2**63 - 1

Key = tuple[int | str, ...]
T = TypeVar("T")


class Row(Protocol):
    """A database row, read by column name (an asyncpg Record)."""

    def __getitem__(self, column: str, /) -> Any: ...


R = TypeVar("R", bound=Row)

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


def by_id(description: str) -> Any:
    """A list's optional filter by the id of a parent object: `Annotated[int | None,
    by_id("Only this store's terminals")]`. Out of bigint range is 400, never a query."""
    return Parameter(required=False, ge=1, le=_ABOVE_EVERY_ID, description=description)


class Page(msgspec.Struct, Generic[T]):
    """One page of a list; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None

    @classmethod
    def example_of(cls, item: Any) -> dict[str, Any]:
        """A page's example for the API's documentation, around the example of its items."""
        return {"items": [item], "next_cursor": encode_cursor((1,))}


def schema_name(name: str) -> KwargDefinition:
    """Names a page type in the OpenAPI document: `Annotated[Page[StoreOut],
    schema_name("StorePage")]`. Left to itself, the framework names each generic page after the
    item's module path (`Page_qrloop.accounts.schemas.StoreOut_`)."""
    return KwargDefinition(schema_component_key=name)


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


def page_sql(
    select: str, conditions: str = "", *, owner: str = "merchant_id", key: str = "id"
) -> str:
    """`select` (`SELECT ... FROM ...`) as a newest-first page for `newest_page`: $1 the owner,
    $2 the key the page starts below, $3 `limit + 1`; `conditions` (` AND ...`) take $4 on."""
    return f"{select} WHERE {owner} = $1 AND {key} < $2{conditions} ORDER BY {key} DESC LIMIT $3"


def start_below(cursor: str | None) -> int:
    """The id a newest-first page starts below: the cursor's, or above every id at first."""
    key = decode_cursor(cursor, int)
    return _ABOVE_EVERY_ID if key is None else int(key[0])


def newest_first(
    rows: Sequence[R], limit: int, out: Callable[[R], T], key_column: str = "id"
) -> Page[T]:
    """The page from `limit + 1` rows read newest first by a bigint column, each made `out`."""
    page = page_of(rows, limit, lambda row: (row[key_column],))
    return Page(items=[out(row) for row in page.items], next_cursor=page.next_cursor)


async def newest_page(
    pool: asyncpg.Pool,
    query: str,
    owner: int,
    cursor: str | None,
    limit: int,
    *filters: object,
    out: Callable[[asyncpg.Record], T],
    key_column: str = "id",
) -> Page[T]:
    """One page of a newest-first list: `query` takes the owner ($1), the key the page starts
    below ($2), `limit + 1` ($3), then the filters."""
    rows = await pool.fetch(query, owner, start_below(cursor), limit + 1, *filters)
    return newest_first(rows, limit, out, key_column)
