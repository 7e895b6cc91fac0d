"""The settlement worker: stream entries → PostgreSQL, acknowledged only after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from operator import attrgetter
from typing import Any, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from redis.exceptions import RedisError, ResponseError
from redis.typing import KeyT, StreamIdT

from qrloop import keyspace, metrics
from qrloop.db import DB_ERRORS, create_pool
from qrloop.probes import start_probes
from qrloop.redis_client import Client, Tls, connect, is_cluster, ping
from qrloop.settings import Settings
from qrloop.settlement import ledger
from qrloop.settlement.events import (
    ClaimRow,
    PoisonEntry,
    RedemptionRow,
    ReversalRow,
    Row,
    VoidRow,
    parse,
)
from qrloop.settlement.partitions import Months, month_of
from qrloop.settlement.state import REBUILD_LOCK
from qrloop.webhooks import outbox

log = logging.getLogger("qrloop.worker")

BATCH = 500
BLOCK_MS = 1000
# A consumer whose last read was not a full batch waits this long from that cycle's start
# before reading again: while the tills are busy, one transaction (one PostgreSQL commit and
# one Valkey acknowledgement, each an fsync) settles everything that came in meanwhile
# instead of a few rows, and the fsyncs stop queueing behind the tills' own. Settlement's
# lag budget is a second; this adds at most PACE_SECONDS to it.
PACE_SECONDS = 0.1
DRAIN_SECONDS = 10.0
# An entry pending this long on some consumer is taken to belong to a dead worker.
RECLAIM_IDLE_MS = 30_000
RECLAIM_EVERY_SECONDS = 10.0
# On a cluster the partitions' streams are read without blocking (see Worker._read_each);
# this is how long a consumer waits after a read that found nothing.
CLUSTER_POLL_SECONDS = 0.1


class RedemptionNotSettled(Exception):
    """A reversal came before its redemption's row (in a sibling's uncommitted batch): its
    batch is retried."""


# A store that cannot answer, or lost the connection mid-batch: retry the batch, never stop.
# asyncpg reports a connection that PostgreSQL dropped mid-transaction (killed under load) as
# an InternalClientError now and then; the batch is retried like any other outage.
_RETRYABLE: tuple[type[Exception], ...] = (
    RedisError,
    asyncpg.InternalClientError,
    *DB_ERRORS,
    RedemptionNotSettled,
)

Entries = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class Worker:
    """One consumer of the settlement group, settling every partition's stream.

    A worker process runs several (QRLOOP_SETTLEMENT_CONSUMERS): each has one transaction in
    flight, so while one waits on PostgreSQL's commit another is reading and inserting. A
    reversal whose redemption is still in a sibling's uncommitted batch fails its foreign key;
    its batch is retried a second later, after the sibling commits.

    Before inserting, a batch makes sure the months its rows belong to exist (`months`,
    shared by the process's consumers); rows of a detached month are parked as poison."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: Client,
        partitions: int,
        webhook_retry_seconds: float = Settings().webhook_retry_seconds,
        name: str | None = None,
        months: Months | None = None,
    ) -> None:
        self._pool = pool
        self._months = months or Months(pool, Settings().partition_months_ahead)
        self._webhook_retry_seconds = webhook_retry_seconds
        self._redis = client
        self._streams = [keyspace.events(p) for p in range(partitions)]
        self._consumer = name or f"{socket.gethostname()}-{os.getpid()}"
        self.settled = 0

    async def ensure_groups(self) -> None:
        """Create the consumer group on each stream, from its first entry, once."""
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(
                    stream, keyspace.SETTLEMENT_GROUP, id="0", mkstream=True
                )
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def run(self, stop: asyncio.Event) -> None:
        """Settle until `stop` is set; the batch in hand is always finished first."""
        await self.ensure_groups()
        # Our own pending entries (from before a crash of this consumer name) come first.
        backlog = True
        next_reclaim = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_reclaim:
                next_reclaim = time.monotonic() + RECLAIM_EVERY_SECONDS
                backlog = await self._reclaim() or backlog
            started = time.monotonic()
            try:
                read = await self._cycle("0" if backlog else ">")
            except ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                # Redis came back without its streams: recreate the groups, settle what comes.
                log.warning("consumer groups missing, recreating them")
                await self.ensure_groups()
                continue
            except _RETRYABLE as error:
                # Unacknowledged entries stay pending and are read again from "0"; those
                # committed but not acknowledged (Redis lost after the commit) settle again as
                # no-ops.
                log.warning("cannot settle now, retrying: %s: %s", type(error).__name__, error)
                # A month detached meanwhile fails its insert: check the months again.
                self._months.forget()
                backlog = True
                await _pause(stop, 1.0)
                continue
            if backlog and not read:
                backlog = False
            if 0 < read < BATCH and not backlog:
                await _pause(stop, PACE_SECONDS - (time.monotonic() - started))

    async def _cycle(self, cursor: str) -> int:
        """Read a batch from `cursor` and settle it; the number of entries read."""
        async with self._pool.acquire() as connection, connection.transaction():
            # Shared from before the read to the commit; a rebuild of lost Redis state takes
            # it exclusively, so no batch read before a loss can commit after the rebuild's
            # scan and leave its codes free again in Redis.
            await connection.execute("SELECT pg_advisory_xact_lock_shared($1)", REBUILD_LOCK)
            entries = await self._read(cursor)
            read = sum(len(batch) for _, batch in entries)
            if not read:
                return 0
            rows, poison = await self._parse_into_months(entries)
            await self._insert(connection, rows)
        await self._acknowledge(entries, poison, rows)
        return read

    async def _reclaim(self) -> bool:
        """Take over entries a dead worker left pending; True when some were taken."""
        taken = False
        for stream in self._streams:
            try:
                _, claimed, _ = await self._redis.xautoclaim(
                    stream, keyspace.SETTLEMENT_GROUP, self._consumer, RECLAIM_IDLE_MS, count=BATCH
                )
            except (RedisError, OSError):
                return taken
            taken = taken or bool(claimed)
        return taken

    async def _read(self, cursor: str) -> Entries:
        if is_cluster(self._redis):
            return await self._read_each(cursor)
        streams: dict[KeyT, StreamIdT] = dict.fromkeys(self._streams, cursor)
        block = None if cursor == "0" else BLOCK_MS
        result = await self._redis.xreadgroup(
            keyspace.SETTLEMENT_GROUP, self._consumer, streams, count=BATCH, block=block
        )
        # RESP2 answers a list of [stream, entries] pairs; that is the protocol we connect with.
        return cast(Entries, result or [])

    async def _read_each(self, cursor: str) -> Entries:
        """On a cluster each partition's stream has a hash slot of its own, and one XREADGROUP
        may name the streams of one slot only: read every partition in one pipeline (split by
        node), without blocking, and wait a moment when none had anything new."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in self._streams:
                pipe.xreadgroup(
                    keyspace.SETTLEMENT_GROUP, self._consumer, {stream: cursor}, count=BATCH
                )
            answers = await pipe.execute()
        entries = [entry for answer in answers for entry in cast(Entries, answer or [])]
        if cursor == ">" and not any(batch for _, batch in entries):
            await asyncio.sleep(CLUSTER_POLL_SECONDS)
        return entries

    async def settle(self, entries: Entries) -> None:
        """Insert entries already read in one transaction, then acknowledge them."""
        rows, poison = await self._parse_into_months(entries)
        async with self._pool.acquire() as connection, connection.transaction():
            await self._insert(connection, rows)
        await self._acknowledge(entries, poison, rows)

    async def _parse_into_months(self, entries: Entries) -> tuple[list[Row], list[Poison]]:
        """The entries' rows, once the months they go to exist; the poison entries, those of
        detached months included."""
        rows, poison = _parse_all(entries, self._months.detached)
        if await self._months.ensure(_months_of(rows)):
            rows, poison = _parse_all(entries, self._months.detached)
        return rows, poison

    async def _acknowledge(self, entries: Entries, poison: list[Poison], rows: list[Row]) -> None:
        """After the commit: park the poison entries, then acknowledge the whole read."""
        committed = time.time()
        for row in rows:
            if isinstance(row, RedemptionRow):
                metrics.SETTLEMENT_LAG.observe(committed - row.redeemed_at.timestamp())
        for stream, _, fields in poison:
            await self._redis.xadd(keyspace.dead_letters(stream.decode()), fields)  # type: ignore[arg-type]
        for stream, batch in entries:
            if batch:
                await self._acknowledge_and_delete(stream, [i for i, _ in batch])
        self.settled += sum(isinstance(row, RedemptionRow) for row in rows)

    async def _acknowledge_and_delete(self, stream: bytes, ids: list[bytes]) -> None:
        """Acknowledge settled entries and delete them in one transaction on the stream's
        key: PostgreSQL holds them now, and a stream that kept every redemption would grow
        Valkey's memory by ~100 bytes per redemption for ever."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, keyspace.SETTLEMENT_GROUP, *ids)
            pipe.xdel(stream, *ids)
            await pipe.execute()

    async def _insert(self, connection: PoolConnectionProxy, rows: list[Row]) -> None:
        """Rows first (a reversal refers to its redemption), then their ledger postings and
        webhook events, in the caller's transaction: a redemption is settled, booked and
        announced together or not at all."""
        by_type: dict[type, list[Any]] = {row_type: [] for row_type in _INSERTS}
        for row in rows:
            by_type[type(row)].append(row)
        inserted: list[ledger.Settled] = []
        for row_type, (statement, values) in _INSERTS.items():
            if row_type is ReversalRow:
                by_type[row_type] = await _with_redemption_times(connection, by_type[row_type])
            if not by_type[row_type]:
                continue
            columns = [list(column) for column in zip(*map(values, by_type[row_type]), strict=True)]
            if row_type is RedemptionRow:
                fetched = await connection.fetch(statement, *columns)
                inserted = [ledger.Settled(*row) for row in fetched]
            else:
                await connection.execute(statement, *columns)
        retry = self._webhook_retry_seconds
        booked = await ledger.post_redemptions(connection, inserted)
        await outbox.redemptions_created(connection, booked, retry)
        reversals = [
            (r.campaign_id, r.serial, r.use_no, r.redeemed_at) for r in by_type[ReversalRow]
        ]
        await outbox.reversals_booked(
            connection, await ledger.post_reversals(connection, reversals), retry
        )


# Reversal entries written before migration 013 lack their redemption's time; it is read from
# the redemption's row (settled before, or inserted by this batch a moment ago). Every month
# is searched, but only for these few entries, once.
_REDEMPTION_TIMES = """
SELECT k.campaign_id, k.serial, k.use_no, max(r.redeemed_at) AS redeemed_at
FROM unnest($1::bigint[], $2::bigint[], $3::integer[]) AS k (campaign_id, serial, use_no)
JOIN redemptions r USING (campaign_id, serial, use_no)
GROUP BY 1, 2, 3
"""


async def _with_redemption_times(
    connection: PoolConnectionProxy, reversals: list[ReversalRow]
) -> list[ReversalRow]:
    untimed = [(r.campaign_id, r.serial, r.use_no) for r in reversals if r.redeemed_at is None]
    if not untimed:
        return reversals
    found = {
        (row["campaign_id"], row["serial"], row["use_no"]): row["redeemed_at"]
        for row in await connection.fetch(_REDEMPTION_TIMES, *map(list, zip(*untimed, strict=True)))
    }
    if len(found) < len(set(untimed)):
        raise RedemptionNotSettled(f"{len(set(untimed)) - len(found)} reversal(s) wait for theirs")
    return [
        r if r.redeemed_at else replace(r, redeemed_at=found[r.campaign_id, r.serial, r.use_no])
        for r in reversals
    ]


Poison = tuple[bytes, bytes, dict[bytes, bytes]]


def _parse_all(
    entries: Entries, detached: frozenset[date] = frozenset()
) -> tuple[list[Row], list[Poison]]:
    """The rows the entries settle into, and the entries no retry can settle: malformed, or
    of a detached month, which is never written again (most likely a replay of an entry
    settled before the detach; a person looks at it in the dead-letter stream)."""
    rows: list[Row] = []
    poison: list[Poison] = []
    for stream, batch in entries:
        for entry_id, fields in batch:
            try:
                row = parse(entry_id.decode(), fields)
                if _month_of(row) in detached:
                    raise PoisonEntry(f"entry {entry_id.decode()}: its month was detached")
                rows.append(row)
            except PoisonEntry as error:
                log.error("dead-lettering %s", error)
                poison.append((stream, entry_id, fields))
    return rows, poison


def _month_of(row: Row) -> date | None:
    """The month (partition) a row goes to, for the tables partitioned by month."""
    if isinstance(row, RedemptionRow | ReversalRow) and row.redeemed_at is not None:
        return month_of(row.redeemed_at)
    return None


def _months_of(rows: list[Row]) -> set[date]:
    return {month for month in map(_month_of, rows) if month is not None}


def _unnest_insert(table: str, columns: dict[str, str], settled_at: bool = False) -> str:
    """One INSERT for a whole batch: each column travels as one array. With `settled_at`, that
    column is the moment of the insert: clock_timestamp(), not now(), which is the start of a
    transaction begun before the blocking read and so earlier than the redemption itself."""
    arrays = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(columns.values(), 1))
    names, values = ", ".join(columns), "*"
    if settled_at:
        names, values = f"{names}, settled_at", "*, clock_timestamp()"
    return (
        f"INSERT INTO {table} ({names}) SELECT {values} FROM unnest({arrays})"
        " ON CONFLICT DO NOTHING"
    )


# A redemption is one (campaign, serial, use). The partitioned table's key also holds its
# time (the month it is stored in), so the use alone is claimed first in redemption_uses
# (migration 023), an index probe whatever the planner's statistics say. A use can reach
# settlement twice with two times only when a Redis failover lost a consume that was already
# settled and the code was consumed again (see "replicated" in docs/design.md): the first row
# stands, and only rows inserted now are booked. Within a batch the earliest entry wins.
_SETTLE_REDEMPTIONS = """
WITH k AS (
  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::bigint[], $5::bigint[],
                       $6::bigint[], $7::timestamptz[], $8::text[])
    AS k (campaign_id, serial, use_no, terminal_id, store_id, accepting_merchant_id,
          redeemed_at, stream_entry)
), first_uses AS (
  INSERT INTO redemption_uses (campaign_id, serial, use_no)
  SELECT campaign_id, serial, use_no FROM k
  ON CONFLICT DO NOTHING
  RETURNING campaign_id, serial, use_no
)
INSERT INTO redemptions (campaign_id, serial, use_no, terminal_id, store_id,
                         accepting_merchant_id, redeemed_at, stream_entry, settled_at)
SELECT DISTINCT ON (k.campaign_id, k.serial, k.use_no) k.*, clock_timestamp()
FROM k JOIN first_uses USING (campaign_id, serial, use_no)
ORDER BY k.campaign_id, k.serial, k.use_no, k.stream_entry
ON CONFLICT DO NOTHING
RETURNING campaign_id, serial, use_no, redeemed_at, accepting_merchant_id, store_id,
          terminal_id
"""

# Row type → (its INSERT, its values in the statement's column order). Redemptions go first:
# a reversal's row refers to its redemption's.
_INSERTS: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    RedemptionRow: (
        _SETTLE_REDEMPTIONS,
        attrgetter("campaign_id", "serial", "use_no", "terminal_id", "store_id",
                   "merchant_id", "redeemed_at", "stream_entry"),
    ),
    ReversalRow: (
        _unnest_insert("reversals", {
            "campaign_id": "bigint", "serial": "bigint", "use_no": "integer",
            "redeemed_at": "timestamptz", "terminal_id": "bigint", "store_id": "bigint",
            "reversed_at": "timestamptz",
        }, settled_at=True),
        attrgetter("campaign_id", "serial", "use_no", "redeemed_at", "terminal_id", "store_id",
                   "reversed_at"),
    ),
    VoidRow: (
        _unnest_insert("voids", {
            "campaign_id": "bigint", "first_serial": "bigint", "last_serial": "bigint",
            "voided_at": "timestamptz",
        }),
        attrgetter("campaign_id", "first_serial", "last_serial", "voided_at"),
    ),
    ClaimRow: (
        _unnest_insert("claims", {
            "campaign_id": "bigint", "serial": "bigint", "consumer_hash": "text",
            "claimed_at": "timestamptz",
        }),
        attrgetter("campaign_id", "serial", "consumer_hash", "claimed_at"),
    ),
}  # fmt: skip


async def settlement_gauges(client: Client, partitions: int) -> tuple[int, int]:
    """(entries read or unread but not yet acknowledged, entries in dead-letter streams)."""
    async with client.pipeline(transaction=False) as pipe:
        for partition in range(partitions):
            stream = keyspace.events(partition)
            pipe.xinfo_groups(stream)
            pipe.xlen(keyspace.dead_letters(stream))
        answers = await pipe.execute(raise_on_error=False)
    backlog = dead = 0
    for groups, dead_count in zip(answers[0::2], answers[1::2], strict=True):
        for group in groups if isinstance(groups, list) else []:
            if group["name"] == keyspace.SETTLEMENT_GROUP.encode():
                backlog += int(group["pending"]) + int(group.get("lag") or 0)
        dead += int(dead_count) if isinstance(dead_count, int) else 0
    return backlog, dead


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def serve(settings: Settings) -> None:
    """Settle, deliver webhooks and consumer messages until SIGTERM or SIGINT, then drain for
    at most DRAIN_SECONDS."""
    from qrloop.messages.delivery import Courier, senders
    from qrloop.webhooks.delivery import Dispatcher

    assert settings.database_url and settings.redis_url
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    consumers = settings.settlement_consumers
    pool = await create_pool(
        settings.database_url, consumers + 3, statement_cache=settings.statement_cache
    )
    client = await connect(settings.redis_url, Tls.of(settings), socket_timeout=BLOCK_MS / 1000 + 5)
    process = f"{socket.gethostname()}-{os.getpid()}"
    months = Months(pool, settings.partition_months_ahead)
    workers = [
        Worker(
            pool, client, settings.partitions, settings.webhook_retry_seconds,
            f"{process}-{i}", months,
        )
        for i in range(consumers)
    ]  # fmt: skip
    dispatcher = Dispatcher(pool, settings)
    courier = Courier(pool, senders(settings))
    log.info(
        "settlement worker %s started: %d consumers on %d partitions",
        process, consumers, settings.partitions,
    )  # fmt: skip

    async def ready() -> None:
        await pool.fetchval("SELECT 1")
        await ping(client)

    probes = await start_probes(settings, ready)
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    tasks.append(asyncio.create_task(dispatcher.run(stop)))
    tasks.append(asyncio.create_task(courier.run(stop)))
    tasks.append(asyncio.create_task(months.run(stop)))
    stopping = asyncio.create_task(stop.wait())
    # A task that ends before the stop signal has failed: exit, so the supervisor restarts us
    # rather than leave a live process that settles nothing.
    await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_SECONDS)
    except TimeoutError:
        log.warning(
            "drain took longer than %ss; unacknowledged entries stay pending", DRAIN_SECONDS
        )
    finally:
        if probes:
            probes.close()
        await client.aclose()
        await pool.close()
    log.info(
        "settlement worker stopped after settling %d redemptions and delivering %d webhooks",
        sum(worker.settled for worker in workers),
        dispatcher.delivered,
    )
