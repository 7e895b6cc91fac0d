"""Monthly partitions of redemptions, reversals and the ledger (migration 013).

The partition key of the four tables is the redemption's time, in UTC months. The worker
makes the current month and the next QRLOOP_PARTITION_MONTHS_AHEAD ones, and any month a
batch needs, before it inserts; `qrloop partitions detach --before YYYY-MM` takes old months
out. There is no default partition: a row with no month would land there unseen, each new
month would first have to scan it under lock, and DETACH ... CONCURRENTLY refuses to run
while one exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop.db import DB_ERRORS

log = logging.getLogger("qrloop.partitions")

# Referenced tables first: each table's foreign key points at the one before it.
TABLES = ("redemptions", "reversals", "ledger_transactions", "ledger_entries")
MAINTAIN_EVERY_SECONDS = 3600.0
# A new month's ATTACH waits this long for a lock at most (a long report holding the parent),
# then gives way and is tried again: the tables are never blocked behind it for longer.
LOCK_TIMEOUT = "5s"
Connection = asyncpg.Connection | PoolConnectionProxy
_NAME = re.compile(r"^(?P<table>[a-z_]+)_(?P<year>\d{4})_(?P<month>\d{2})$")


def month_of(moment: datetime) -> date:
    """The first day of the UTC month of `moment`."""
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_{month:%Y_%m}"


class Months:
    """The months the worker knows to exist in all four tables, and those detached.

    Shared by the consumers of one worker process: one creates a missing month while the
    others wait for it. Across processes the database function serialises them."""

    def __init__(self, pool: asyncpg.Pool, ahead: int) -> None:
        self._pool = pool
        self._ahead = ahead
        self._ready: set[date] = set()
        self.detached: frozenset[date] = frozenset()
        self._lock = asyncio.Lock()

    async def ensure(self, months: Iterable[date]) -> bool:
        """Make the months not known to exist (detached ones excepted); True when that showed
        months detached since they were last read, whose events must now be parked."""
        missing = set(months) - self._ready - self.detached
        if not missing:
            return False
        async with self._lock:
            missing -= self._ready
            if not missing:
                return False
            before = self.detached
            async with self._pool.acquire() as connection:
                rows = await connection.fetch("SELECT month FROM detached_months")
                self.detached = frozenset(row["month"] for row in rows)
                # A month a transaction: another worker making months waits for one at most.
                for month in sorted(missing - self.detached):
                    async with connection.transaction():
                        await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                        await connection.fetchval("SELECT create_month_partitions($1)", month)
                    self._ready.add(month)
            return self.detached != before

    def forget(self) -> None:
        """Check every month again before its next insert (after an insert failed)."""
        self._ready.clear()

    async def maintain(self) -> None:
        """The current month and the months ahead, so inserts never wait for one."""
        this_month = month_of(datetime.now(UTC))
        await self.ensure(add_months(this_month, i) for i in range(self._ahead + 1))

    async def run(self, stop: asyncio.Event) -> None:
        """Maintain now and every hour until `stop`; an outage is retried a minute later."""
        while not stop.is_set():
            try:
                await self.maintain()
                wait = MAINTAIN_EVERY_SECONDS
            except DB_ERRORS as error:
                log.warning("cannot make the months ahead now: %s: %s", type(error).__name__, error)
                wait = 60.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `detach` did with one month."""

    month: date
    detached: list[str]  # the tables it took out, now standalone
    kept_for: list[int]  # campaigns that can still be redeemed, which keep the month


# Campaigns that can still redeem codes whose uses this month holds. A rebuild of lost Redis
# state reads uses from these rows: without them such codes would be free again.
_LIVE_CAMPAIGNS = """
SELECT c.id FROM campaigns c
WHERE (c.valid_until IS NULL OR c.valid_until > now())
  AND EXISTS (SELECT FROM {partition} r WHERE r.campaign_id = c.id)
ORDER BY c.id
"""
_ATTACHED = """
SELECT child.relname AS name, i.inhdetachpending AS pending, parent.relname AS parent
FROM pg_inherits i
JOIN pg_class child ON child.oid = i.inhrelid
JOIN pg_class parent ON parent.oid = i.inhparent
WHERE parent.relname = ANY ($1::text[]) AND parent.relnamespace = 'public'::regnamespace
"""
# Foreign keys of a detached table that point at the monthly tables: they would stop the
# month of the table they point at from being detached in turn.
_MONTHLY_FOREIGN_KEYS = """
SELECT conname FROM pg_constraint
WHERE conrelid = $1::regclass AND contype = 'f'
  AND confrelid IN (SELECT oid FROM pg_class
                    WHERE relname = ANY ($2::text[]) AND relnamespace = 'public'::regnamespace)
"""


def earliest_kept(today: date) -> date:
    """The oldest month `detach` always keeps: the previous one, whose last redemptions may
    still be settling or be reversed (within a day) when a new month starts."""
    return add_months(month_of(datetime.combine(today, datetime.min.time(), UTC)), -1)


async def attached_months(connection: Connection) -> dict[date, dict[str, bool]]:
    """Month → {table: detach pending} for every partition of the four tables."""
    months: dict[date, dict[str, bool]] = {}
    for row in await connection.fetch(_ATTACHED, list(TABLES)):
        match = _NAME.match(row["name"])
        if match and match["table"] == row["parent"]:
            month = date(int(match["year"]), int(match["month"]), 1)
            months.setdefault(month, {})[row["parent"]] = row["pending"]
    return months


async def detach(pool: asyncpg.Pool, before: date) -> list[Outcome]:
    """Detach every month before `before` (never the current or previous month) whose
    campaigns have all ended: referencing tables first, each CONCURRENTLY (reads and inserts
    of other months go on), and a detach interrupted earlier is finished first. The month is
    recorded in detached_months before anything is detached, so the worker never makes it
    again: an event of it that comes back is parked, never settled a second time."""
    if before > earliest_kept(datetime.now(UTC).date()):
        raise ValueError(
            f"the current and the previous month stay attached: --before must be"
            f" {earliest_kept(datetime.now(UTC).date()):%Y-%m} or earlier"
        )
    async with pool.acquire() as connection:
        return await _detach_before(connection, before)


async def _detach_before(connection: Connection, before: date) -> list[Outcome]:
    outcomes = []
    for month, tables in sorted((await attached_months(connection)).items()):
        if month >= before:
            break
        live = await connection.fetch(
            _LIVE_CAMPAIGNS.format(partition=partition_name("redemptions", month))
        ) if "redemptions" in tables and not tables["redemptions"] else []  # fmt: skip
        if live:
            outcomes.append(Outcome(month, [], [row["id"] for row in live]))
            continue
        await connection.execute(
            "INSERT INTO detached_months (month) VALUES ($1) ON CONFLICT DO NOTHING", month
        )
        done = []
        for table in reversed(TABLES):
            if table in tables:
                await _detach_one(connection, table, month, pending=tables[table])
                done.append(partition_name(table, month))
        outcomes.append(Outcome(month, done, []))
    return outcomes


async def _detach_one(connection: Connection, table: str, month: date, *, pending: bool) -> None:
    partition = partition_name(table, month)
    how = "FINALIZE" if pending else "CONCURRENTLY"
    await connection.execute(f"ALTER TABLE {table} DETACH PARTITION {partition} {how}")
    for row in await connection.fetch(_MONTHLY_FOREIGN_KEYS, partition, list(TABLES)):
        await connection.execute(f'ALTER TABLE {partition} DROP CONSTRAINT "{row["conname"]}"')


def describe(outcomes: list[Outcome]) -> str:
    """One line per month, for the operator."""
    if not outcomes:
        return "no month to detach"
    lines = []
    for outcome in outcomes:
        if outcome.detached:
            lines.append(
                f"{outcome.month:%Y-%m}: detached {', '.join(outcome.detached)}"
                " (standalone tables now: dump them, then drop them)"
            )
        else:
            shown = ", ".join(map(str, outcome.kept_for[:10]))
            more = f" and {len(outcome.kept_for) - 10} more" if len(outcome.kept_for) > 10 else ""
            lines.append(
                f"{outcome.month:%Y-%m}: kept: campaigns {shown}{more} can still be redeemed"
                " (a rebuild of lost Redis state reads their uses from this month); it can"
                " go once they have ended (valid_until)"
            )
    return "\n".join(lines)
