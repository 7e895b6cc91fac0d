"""Settled redemptions as their issuer or acceptor sees them: one, a page, or all as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncGenerator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from qrloop.errors import Problem, Reason
from qrloop.history import queries
from qrloop.history.queries import Filters, Key
from qrloop.history.schemas import CSV_COLUMNS, RedemptionOut
from qrloop.pagination import Page, decode_cursor, page_of
from qrloop.redemption.store import RedemptionId

# Rows fetched from the server-side cursor at a time, and written out as one chunk.
CSV_BATCH = 2000
# A spreadsheet runs a cell that starts like this as a formula. Names come from other
# merchants (an acceptor names its stores), so they are written as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _out(row: asyncpg.Record) -> RedemptionOut:
    redemption_id = RedemptionId(row["campaign_id"], row["serial"], row["use_no"])
    return RedemptionOut(redemption_id=str(redemption_id), **row)


def _key(item: RedemptionOut) -> tuple[str, int, int, int]:
    return (item.redeemed_at.isoformat(), item.campaign_id, item.serial, item.use_no)


def after(cursor: str | None) -> Key | None:
    """The key of the row a list's cursor stops at; 400 for a cursor this list never gave."""
    key = decode_cursor(cursor, str, int, int, int)
    if key is None:
        return None
    at, campaign_id, serial, use_no = key
    moment = utc(str(at))
    if moment is None or not _in_range(int(campaign_id), int(serial), int(use_no)):
        raise Problem(Reason.BAD_REQUEST, "cursor is not one this list gave out")
    return (moment, int(campaign_id), int(serial), int(use_no))


def utc(text: str) -> datetime | None:
    """An RFC 3339 time, with its offset, in UTC; None when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
        return moment.astimezone(UTC) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def _in_range(campaign_id: int, serial: int, use_no: int) -> bool:
    """Whether the parts fit the columns (use_no is a PostgreSQL integer)."""
    return campaign_id >= 0 and serial >= 0 and 0 <= use_no < 2**31


async def get(pool: asyncpg.Pool, merchant_id: int, redemption_id: str) -> RedemptionOut:
    """One redemption its issuer or acceptor asks for; anyone else's is not found, alike."""
    parsed = RedemptionId.parse(redemption_id)
    row = None
    if parsed is not None and _in_range(parsed.campaign_id, parsed.serial, parsed.use_no):
        statement, args = queries.one(
            merchant_id, (parsed.campaign_id, parsed.serial, parsed.use_no)
        )
        row = await pool.fetchrow(statement, *args)
    if row is None:
        raise Problem(Reason.NOT_FOUND, f"No redemption {redemption_id!r} for this merchant.")
    return _out(row)


async def page(
    pool: asyncpg.Pool, filters: Filters, cursor: str | None, limit: int
) -> Page[RedemptionOut]:
    """The page after `cursor`, newest first."""
    statement, args = queries.listing(filters, after(cursor), limit + 1)
    rows = await pool.fetch(statement, *args)
    return page_of([_out(row) for row in rows], limit, _key)


async def csv_chunks(pool: asyncpg.Pool, filters: Filters) -> AsyncGenerator[bytes, None]:
    """Every redemption the filters select, newest first, as CSV with a header row: read in
    batches from a server-side cursor, in one repeatable-read snapshot, so memory stays the
    same however long the history. The header comes once the cursor is open, so a caller that
    awaits the first chunk learns then whether PostgreSQL can answer."""
    statement, args = queries.listing(filters, None, None)
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        cursor = await connection.cursor(statement, *args)
        yield _csv([CSV_COLUMNS])
        while batch := await cursor.fetch(CSV_BATCH):
            yield _csv(_csv_row(row) for row in batch)


def as_csv(rows: Iterable[Mapping[str, object]]) -> str:
    """Rows with a redemption's columns as the CSV lists them, header first (for examples)."""
    return _csv([CSV_COLUMNS, *map(_csv_row, rows)]).decode()


def _csv(rows: Iterable[Iterable[object]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def _csv_row(row: asyncpg.Record | Mapping[str, Any]) -> list[object]:
    redemption_id = RedemptionId(row["campaign_id"], row["serial"], row["use_no"])
    return [str(redemption_id), *(_cell(row[column]) for column in CSV_COLUMNS[1:])]


def _cell(value: object) -> object:
    if isinstance(value, datetime):
        # As the JSON list writes it (asyncpg hands timestamptz over in UTC).
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if value is None:
        return ""
    return value
