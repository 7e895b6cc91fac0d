"""Counts of a merchant's settled redemptions for the dashboard's charts: by hour (or day)
over a time range, and by store.

Both count the rows the redemption list's filters select (history/queries.py `selected`), so
they read the same indexes as the list and are scoped to the merchant the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from qrloop.history import queries
from qrloop.history.queries import Filters

# Stores beyond this many (the busiest first) are summed as one bar.
STORES_SHOWN = 12


class Unit(StrEnum):
    """How long one bar of the time chart is."""

    HOUR = "hour"
    DAY = "day"

    @property
    def length(self) -> timedelta:
        return timedelta(hours=1) if self is Unit.HOUR else timedelta(days=1)


# Up to a week is drawn by the hour (168 bars); a longer range by the day.
HOURLY_UP_TO = timedelta(days=7)


def unit_for(since: datetime, until: datetime) -> Unit:
    return Unit.HOUR if until - since <= HOURLY_UP_TO else Unit.DAY


@dataclass(frozen=True, slots=True)
class StoreCount:
    store_id: int | None  # None: the stores beyond STORES_SHOWN, together
    name: str
    count: int


async def by_time(
    pool: asyncpg.Pool, filters: Filters, since: datetime, until: datetime, unit: Unit
) -> list[tuple[datetime, int]]:
    """One (start, count) per hour or day (UTC) from `since` to `until`, those with none
    included, so the chart's bars stand for equal times."""
    statement, args = time_statement(filters, unit)
    counted = {row["bucket"]: row["n"] for row in await pool.fetch(statement, *args)}
    return [(start, counted.get(start, 0)) for start in buckets(since, until, unit)]


def time_statement(filters: Filters, unit: Unit) -> tuple[str, list[Any]]:
    """The count of the selected rows per UTC hour or day, and its arguments."""
    rows_sql, args = queries.selected(filters)
    statement = (
        f"SELECT date_trunc(${len(args) + 1}, k.redeemed_at, 'UTC') AS bucket, count(*) AS n"
        f" FROM ({rows_sql}) k GROUP BY 1"
    )
    return statement, [*args, unit.value]


def store_statement(filters: Filters) -> tuple[str, list[Any]]:
    """The count of the selected rows per accepting store, busiest first."""
    rows_sql, args = queries.selected(filters)
    statement = (
        "SELECT k.store_id, s.name, count(*) AS n"
        f" FROM ({rows_sql}) k JOIN stores s ON s.id = k.store_id"
        " GROUP BY k.store_id, s.name ORDER BY n DESC, k.store_id"
    )
    return statement, args


def buckets(since: datetime, until: datetime, unit: Unit) -> list[datetime]:
    """The starts of the UTC hours or days that `[since, until)` touches."""
    start = since.replace(minute=0, second=0, microsecond=0)
    if unit is Unit.DAY:
        start = start.replace(hour=0)
    starts = []
    while start < until:
        starts.append(start)
        start += unit.length
    return starts


async def by_store(pool: asyncpg.Pool, filters: Filters) -> list[StoreCount]:
    """Redemptions per accepting store, busiest first; past STORES_SHOWN, one "other" line."""
    statement, args = store_statement(filters)
    return collapsed(
        [
            StoreCount(row["store_id"], row["name"], row["n"])
            for row in await pool.fetch(statement, *args)
        ]
    )


def collapsed(counts: list[StoreCount]) -> list[StoreCount]:
    """At most STORES_SHOWN lines: the busiest stores, then the rest summed as one."""
    if len(counts) <= STORES_SHOWN:
        return counts
    rest = counts[STORES_SHOWN - 1 :]
    other = StoreCount(None, f"{len(rest)} other stores", sum(c.count for c in rest))
    return [*counts[: STORES_SHOWN - 1], other]
