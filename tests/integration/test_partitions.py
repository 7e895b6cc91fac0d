"""Redemptions, reversals and the ledger partitioned by month (migration 013): settlement stays
exactly once across month boundaries, months are made on demand and detached for good, the
migration keeps every row, and the hot queries read one or two months."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio

from qrloop import db, keyspace
from qrloop.issuance.campaigns import _STATS
from qrloop.redemption.decide import _LAST_USE
from qrloop.settlement import reports
from qrloop.settlement.events import RedemptionRow
from qrloop.settlement.ledger import _POST_REDEMPTIONS, _POST_REVERSALS
from qrloop.settlement.partitions import Months, add_months, month_of
from qrloop.settlement.worker import _INSERTS, Worker
from qrloop.webhooks.outbox import _CREATED, _REVERSED
from support import Stores, own_stores

MONTHLY = ("redemptions", "reversals", "ledger_transactions", "ledger_entries")
COUNTS = "SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table in MONTHLY)
# The boundary the replays straddle: a month long past, which the worker makes on demand.
BOUNDARY = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def fresh(stores: Stores) -> Iterator[Stores]:
    """A migrated database and an empty Redis db of this test's own."""
    with own_stores(stores) as own:
        asyncio.run(db.migrate(own.database_url, progress=lambda _: None))
        yield own


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def _shop(
    connection: asyncpg.Connection, valid_until: datetime | None = None
) -> dict[str, int]:
    """A merchant with a store, a terminal and a campaign (face value 500, fee 10), created
    long before BOUNDARY."""
    merchant = await connection.fetchval("INSERT INTO merchants (name) VALUES ('M') RETURNING id")
    store = await connection.fetchval(
        "INSERT INTO stores (merchant_id, name) VALUES ($1, 'S') RETURNING id", merchant
    )
    terminal = await connection.fetchval(
        "INSERT INTO terminals (merchant_id, store_id, name, secret_digest)"
        " VALUES ($1, $2, 'T', '') RETURNING id",
        merchant,
        store,
    )
    campaign = await connection.fetchval(
        "INSERT INTO campaigns (merchant_id, name, face_value, currency, algorithm, platform_fee,"
        " valid_until, created_at) VALUES ($1, 'C', 500, 'CNY', 'hmac-sha256', 10, $2,"
        " '2024-01-01') RETURNING id",
        merchant,
        valid_until,
    )
    return {"merchant": merchant, "store": store, "terminal": terminal, "campaign": campaign}


def _redeem_entry(shop: dict[str, int], serial: int, at: datetime) -> dict[str, str]:
    values = (shop["campaign"], serial, 1, shop["terminal"], shop["store"], shop["merchant"])
    return {"redeem": "|".join(map(str, (*values, _ms(at))))}


def _reverse_entry(
    shop: dict[str, int], serial: int, at: datetime, redeemed: datetime | None
) -> dict[str, str]:
    """A reversal entry; without `redeemed`, as written before migration 013."""
    values = [shop["campaign"], serial, 1, shop["terminal"], shop["store"], _ms(at)]
    return {"reverse": "|".join(map(str, values + ([_ms(redeemed)] if redeemed else [])))}


Entries = list[tuple[bytes, dict[bytes, bytes]]]
STREAM = keyspace.events(0)


@asynccontextmanager
async def _worker(own: Stores) -> AsyncIterator[tuple[Worker, redis.asyncio.Redis]]:
    pool = await db.create_pool(own.database_url, 3)
    client = redis.asyncio.Redis.from_url(own.redis_url)
    try:
        yield Worker(pool, client, 16), client
    finally:
        await client.aclose()
        await pool.close()


async def _settle(own: Stores, fields: list[dict[str, str]]) -> Entries:
    """Queue the entries on partition 0's stream and settle them as one batch, the way a worker
    settles a batch it read; return them (settled, they leave the stream)."""
    async with _worker(own) as (worker, client):
        ids = [await client.xadd(STREAM, entry) for entry in fields]  # type: ignore[arg-type]
        entries = [entry for entry in await client.xrange(STREAM) if entry[0] in ids]
        await worker.settle([(STREAM.encode(), entries)])
        return entries


async def _settle_again(own: Stores, entries: Entries) -> None:
    """Settle entries once more, as a worker does that read them before a crash."""
    async with _worker(own) as (worker, _):
        await worker.settle([(STREAM.encode(), entries)])


async def _fetch(own: Stores, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(own.database_url)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def _with_connection(own: Stores, work: Any) -> Any:
    connection = await asyncpg.connect(own.database_url)
    try:
        return await work(connection)
    finally:
        await connection.close()


def test_replayed_events_at_a_month_boundary_insert_nothing(fresh: Stores) -> None:
    """A redemption a millisecond before a month ends, another a millisecond after, and the
    first one's reversal in the new month settle into the months of their redemptions (the
    reversal and its booking in the old month, booked on the new day), into months the worker
    made on demand. Settling the same entries again, and the reversal once more as written
    before migration 013 (without its redemption's time), inserts nothing anywhere; each
    day's settlement report still counts each booking once."""
    shop = asyncio.run(_with_connection(fresh, _shop))
    before, after = BOUNDARY - timedelta(milliseconds=1), BOUNDARY + timedelta(milliseconds=1)
    entries = [
        _redeem_entry(shop, 7, before),
        _redeem_entry(shop, 8, after),
        _reverse_entry(shop, 7, after + timedelta(seconds=1), before),
    ]
    settled = asyncio.run(_settle(fresh, entries))
    counts = asyncio.run(_fetch(fresh, COUNTS))[0]
    assert tuple(counts) == (2, 1, 3, 12)  # four entries a booking: value and fee
    placed = asyncio.run(_fetch(fresh, """
        SELECT tableoid::regclass::text AS partition, serial, NULL AS kind FROM redemptions
        UNION ALL SELECT tableoid::regclass::text, serial, 'reversal' FROM reversals
        UNION ALL SELECT tableoid::regclass::text, serial, kind FROM ledger_transactions
        ORDER BY 1, 2, 3"""))  # fmt: skip
    assert [tuple(row) for row in placed] == [
        ("ledger_transactions_2024_02", 7, "redemption"),
        ("ledger_transactions_2024_02", 7, "reversal"),
        ("ledger_transactions_2024_03", 8, "redemption"),
        ("redemptions_2024_02", 7, None),
        ("redemptions_2024_03", 8, None),
        ("reversals_2024_02", 7, "reversal"),
    ]

    asyncio.run(_settle_again(fresh, settled))
    asyncio.run(_settle(fresh, [_reverse_entry(shop, 7, after + timedelta(seconds=1), None)]))
    assert asyncio.run(_fetch(fresh, COUNTS))[0] == counts

    async def report(day: date) -> reports.Settlement:
        pool = await db.create_pool(fresh.database_url, 1)
        try:
            return await reports.daily(pool, shop["merchant"], day)
        finally:
            await pool.close()

    old_day, new_day = asyncio.run(report(before.date())), asyncio.run(report(after.date()))
    assert [(line.redemptions, line.reversals, line.amount) for line in old_day.lines] == [
        (1, 0, 500)
    ]
    assert [(line.redemptions, line.reversals, line.amount) for line in new_day.lines] == [
        (1, 1, 0)
    ]


def _cli(own: Stores, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": own.database_url, "REDIS_URL": own.redis_url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "qrloop", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_detached_month_is_never_settled_into_again(fresh: Stores) -> None:
    """`qrloop partitions detach --before 2024-03` detaches February 2024 from all four tables
    (its campaign has ended) and keeps January, whose campaign can still be redeemed (a rebuild
    of lost Redis state needs its uses). A replay of a February event afterwards, and a new
    February event, are parked in the dead-letter stream: the month is not made again and
    nothing is settled twice. The current month cannot be detached."""
    ended = asyncio.run(
        _with_connection(fresh, lambda c: _shop(c, datetime(2024, 6, 1, tzinfo=UTC)))
    )
    live = asyncio.run(_with_connection(fresh, _shop))
    february = BOUNDARY - timedelta(days=3)
    asyncio.run(_settle(fresh, [
        _redeem_entry(ended, 1, february), _redeem_entry(live, 1, datetime(2024, 1, 9, tzinfo=UTC)),
    ]))  # fmt: skip

    done = _cli(fresh, "partitions", "detach", "--before", "2024-03")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"2024-01: kept: campaigns {live['campaign']} can still be redeemed (a rebuild of lost"
        " Redis state reads their uses from this month); it can go once they have ended"
        " (valid_until)",
        "2024-02: detached ledger_entries_2024_02, ledger_transactions_2024_02, reversals_2024_02,"
        " redemptions_2024_02 (standalone tables now: dump them, then drop them)",
    ]
    counts = asyncio.run(_fetch(fresh, COUNTS))[0]
    assert tuple(counts) == (1, 0, 1, 4)
    archived = "SELECT count(*) FROM redemptions_2024_02"
    assert asyncio.run(_fetch(fresh, archived))[0][0] == 1

    asyncio.run(
        _settle(fresh, [_redeem_entry(ended, 1, february), _redeem_entry(ended, 2, february)])
    )
    assert asyncio.run(_fetch(fresh, COUNTS))[0] == counts
    attached = "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'redemptions_2024_02'::regclass"
    assert asyncio.run(_fetch(fresh, attached))[0][0] == 0

    async def parked() -> list[Any]:
        client = redis.asyncio.Redis.from_url(fresh.redis_url)
        try:
            return list(await client.xrange(keyspace.dead_letters(STREAM)))
        finally:
            await client.aclose()

    assert [fields for _, fields in asyncio.run(parked())] == [
        {b"redeem": _redeem_entry(ended, serial, february)["redeem"].encode()} for serial in (1, 2)
    ]
    this_month = f"{month_of(datetime.now(UTC)):%Y-%m}"
    refused = _cli(fresh, "partitions", "detach", "--before", this_month)
    assert refused.returncode == 2
    assert "the current and the previous month stay attached" in refused.stderr


_OLD_ROWS = """
INSERT INTO redemptions (campaign_id, serial, use_no, terminal_id, store_id,
                         accepting_merchant_id, redeemed_at, stream_entry)
SELECT {campaign}, s, 1, {terminal}, {store}, {merchant},
       timestamptz '2025-01-20 12:00+00' + s * interval '1 day', s || '-0'
FROM generate_series(0, 59) s;
INSERT INTO reversals (campaign_id, serial, use_no, terminal_id, store_id, reversed_at)
SELECT campaign_id, serial, 1, terminal_id, store_id, redeemed_at + interval '1 hour'
FROM redemptions WHERE serial % 10 = 0;
INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, booked_at)
SELECT 'redemption', campaign_id, serial, use_no, redeemed_at FROM redemptions;
INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, booked_at)
SELECT 'reversal', campaign_id, serial, use_no, reversed_at FROM reversals;
INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
SELECT t.id, {merchant}, e.account, 'CNY',
       e.amount * CASE t.kind WHEN 'redemption' THEN 1 ELSE -1 END
FROM ledger_transactions t
CROSS JOIN (VALUES ('payable', -500), ('receivable', 500)) AS e (account, amount);
"""


def test_the_migration_moves_every_row_into_its_month(fresh: Stores) -> None:
    """Migration 013 over a database that holds redemptions of January to March 2025, some
    reversed, all booked: every row lands in the month of its redemption with its ids, the
    keys and indexes of before exist on the partitioned tables (with the partition key), a
    settled redemption cannot be inserted twice, and new ledger ids go on after the old ones."""

    async def migrate_over_old_rows() -> dict[str, Any]:
        admin = await asyncpg.connect(fresh.database_url)
        try:
            await admin.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            await db.migrate(fresh.database_url, progress=lambda _: None, below=13)
            shop = await _shop(admin)
            await admin.execute(_OLD_ROWS.format(**shop))
            old = {
                "entries": await admin.fetch(
                    "SELECT e.*, t.kind, t.serial FROM ledger_entries e"
                    " JOIN ledger_transactions t ON t.id = e.transaction_id ORDER BY 1, 3"
                ),
                "max_id": await admin.fetchval("SELECT max(id) FROM ledger_transactions"),
                "indexes": await admin.fetch(
                    "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid ="
                    " ANY (ARRAY['redemptions', 'reversals', 'ledger_transactions',"
                    " 'ledger_entries']::regclass[]) ORDER BY 1"
                ),
            }
        finally:
            await admin.close()
        applied = await db.migrate(fresh.database_url, progress=lambda _: None)
        assert applied[0] == 13, applied  # and any later migration after it
        connection = await asyncpg.connect(fresh.database_url)
        try:
            new_id = await connection.fetchval(
                "INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, redeemed_at,"
                " booked_at) SELECT 'reversal', campaign_id, serial, use_no, redeemed_at, now()"
                " FROM redemptions WHERE serial = 1 RETURNING id"
            )
            with pytest.raises(asyncpg.UniqueViolationError):
                await connection.execute(
                    "INSERT INTO redemptions SELECT * FROM redemptions WHERE serial = 2"
                )
            return {
                **old,
                "new_id": new_id,
                "entries_after": await connection.fetch(
                    "SELECT e.transaction_id, e.merchant_id, e.account, e.currency, e.amount,"
                    " t.kind, t.serial, e.tableoid::regclass::text AS partition,"
                    " r.tableoid::regclass::text AS redemption_partition"
                    " FROM ledger_entries e JOIN ledger_transactions t"
                    "   ON (t.id, t.redeemed_at) = (e.transaction_id, e.redeemed_at)"
                    " JOIN redemptions r ON (r.campaign_id, r.serial, r.use_no, r.redeemed_at)"
                    "   = (t.campaign_id, t.serial, t.use_no, t.redeemed_at)"
                    " WHERE t.id <= $1 ORDER BY 1, 3",
                    old["max_id"],
                ),
                "months": await connection.fetch(
                    "SELECT tableoid::regclass::text AS partition, count(*) FROM reversals"
                    " GROUP BY 1 ORDER BY 1"
                ),
                "indexes_after": await connection.fetch(
                    "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS def"
                    " FROM pg_index WHERE indrelid = ANY (ARRAY['redemptions', 'reversals',"
                    " 'ledger_transactions', 'ledger_entries']::regclass[]) ORDER BY 1"
                ),
            }
        finally:
            await connection.close()

    found = asyncio.run(migrate_over_old_rows())
    before = [(r["transaction_id"], r["merchant_id"], r["account"], r["currency"], r["amount"],
               r["kind"], r["serial"]) for r in found["entries"]]  # fmt: skip
    after = [tuple(r)[:7] for r in found["entries_after"]]
    assert after == before and len(after) == 2 * (60 + 6)
    months = {(r["partition"][-7:], r["redemption_partition"][-7:]) for r in found["entries_after"]}
    assert months == {("2025_01", "2025_01"), ("2025_02", "2025_02"), ("2025_03", "2025_03")}
    assert [tuple(r) for r in found["months"]] == [
        ("reversals_2025_01", 2), ("reversals_2025_02", 2), ("reversals_2025_03", 2)
    ]  # fmt: skip
    assert found["new_id"] > found["max_id"]
    keys = {r["name"]: r["def"] for r in found["indexes_after"]}
    unique = "ledger_transactions_kind_campaign_id_serial_use_no_{}key"
    assert {r["name"] for r in found["indexes"]} - {unique.format("")} <= keys.keys()
    assert keys["redemptions_pkey"].endswith("(campaign_id, serial, redeemed_at, use_no)")
    assert keys["ledger_transactions_pkey"].endswith("(id, redeemed_at)")
    assert keys[unique.format("redeemed_")].endswith(
        "(kind, campaign_id, serial, use_no, redeemed_at)"
    )


# ---- the hot queries read one or two months ----

ROWS = 200_000
_CAMPAIGNS = """
INSERT INTO campaigns (merchant_id, name, face_value, currency, algorithm, created_at)
SELECT $1, 'C' || k, 500, 'CNY', 'hmac-sha256', least(
    date_trunc('month', now(), 'UTC') - make_interval(months => k) + interval '2 hours',
    now() - interval '1 minute')
FROM generate_series(0, 5) k ORDER BY k RETURNING id
"""
# Redemptions spread evenly over each campaign's life (campaign k began k months ago), one in
# a hundred reversed a minute later, all booked; loaded without triggers, as a restore would.
_LOAD = """
SET session_replication_role = replica;
INSERT INTO redemptions (campaign_id, serial, use_no, terminal_id, store_id,
                         accepting_merchant_id, redeemed_at, settled_at, stream_entry)
SELECT c.id, i, 1, {terminal}, {store}, {merchant}, t.at, t.at, i || '-0'
FROM generate_series(1, {rows}) i
JOIN campaigns c ON c.id = (ARRAY{campaigns}::bigint[])[1 + i % 6]
CROSS JOIN LATERAL (SELECT c.created_at + (now() - interval '1 minute' - c.created_at)
    * ((i::bigint * 7919) % 10007 / 10007.0) AS at) t;
INSERT INTO reversals (campaign_id, serial, use_no, redeemed_at, terminal_id, store_id,
                       reversed_at)
SELECT campaign_id, serial, use_no, redeemed_at, terminal_id, store_id,
       redeemed_at + interval '1 minute'
FROM redemptions WHERE serial % 100 = 0;
INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, redeemed_at, booked_at)
SELECT 'redemption', campaign_id, serial, use_no, redeemed_at, redeemed_at FROM redemptions
UNION ALL
SELECT 'reversal', campaign_id, serial, use_no, redeemed_at, reversed_at FROM reversals;
INSERT INTO ledger_entries (transaction_id, redeemed_at, merchant_id, account, currency, amount)
SELECT t.id, t.redeemed_at, {merchant}, e.account, 'CNY',
       e.amount * CASE t.kind WHEN 'redemption' THEN 1 ELSE -1 END
FROM ledger_transactions t
CROSS JOIN (VALUES ('payable', -500), ('receivable', 500)) AS e (account, amount);
SET session_replication_role = origin;
ANALYZE redemptions, reversals, ledger_transactions, ledger_entries;
"""
_SCANS = """
SELECT relname, seq_scan + coalesce(idx_scan, 0) AS scans FROM pg_stat_user_tables
WHERE relname ~ '^(redemptions|reversals|ledger_transactions|ledger_entries)_\\d{4}_\\d{2}$'
"""
_PARTITION = re.compile(r"^(?P<table>[a-z_]+)_\d{4}_\d{2}$")


class Touches:
    """The partitions statements read or wrote, by table: those in their plans that ran at
    least once (EXPLAIN ANALYZE), and those whose scan counters moved (which also counts what
    a plan does not show: an insert's conflict check, a foreign key's lookup)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self.partitions: set[str] = set()

    async def _scans(self) -> dict[str, int]:
        # Flushed when this session goes idle after the call; read by the next statement.
        await self._connection.execute("SELECT pg_stat_force_next_flush()")
        await self._connection.execute("SELECT pg_stat_clear_snapshot()")
        return {row["relname"]: row["scans"] for row in await self._connection.fetch(_SCANS)}

    async def __aenter__(self) -> Touches:
        self._before = await self._scans()
        self._transaction = self._connection.transaction()
        await self._transaction.start()
        return self

    async def explain(self, statement: str, *args: Any) -> None:
        plan = await self._connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
        nodes = [json.loads(plan)[0]["Plan"]]
        while nodes:
            node = nodes.pop()
            nodes.extend(node.get("Plans", []))
            if node.get("Actual Loops", 0) > 0 and _PARTITION.match(node.get("Relation Name", "")):
                self.partitions.add(node["Relation Name"])

    async def __aexit__(self, *_: object) -> None:
        await self._transaction.rollback()  # the statements' writes too
        after = await self._scans()
        self.partitions |= {
            name for name, scans in after.items() if scans > self._before.get(name, 0)
        }

    def by_table(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for name in self.partitions:
            match = _PARTITION.match(name)
            assert match is not None
            found.setdefault(match["table"], set()).add(name)
        return found


@pytest.fixture
def loaded(fresh: Stores) -> tuple[Stores, dict[str, Any]]:
    """ROWS redemptions over the last six months in six campaigns, booked, with the months
    ahead made, as the worker makes them."""

    async def load(connection: asyncpg.Connection) -> dict[str, Any]:
        shop = await _shop(connection)
        this_month = month_of(datetime.now(UTC))
        for ahead in range(-6, 3):
            await connection.fetchval(
                "SELECT create_month_partitions($1)", add_months(this_month, ahead)
            )
        campaigns = [row["id"] for row in await connection.fetch(_CAMPAIGNS, shop["merchant"])]
        await connection.execute(_LOAD.format(**shop, rows=ROWS, campaigns=campaigns))
        return {**shop, "campaigns": campaigns, "month": this_month}

    return fresh, asyncio.run(_with_connection(fresh, load))


def test_hot_queries_touch_at_most_two_months(loaded: tuple[Stores, dict[str, Any]]) -> None:
    """Over 200,000 redemptions in six months plus months made ahead: a settlement batch (500
        rows, half of them replays: the insert and its once-per-use check, the ledger posting, the
        webhook events, and the same for reversals of those keys), a campaign's stats, a day's
        settlement report on the first of a month, the lookup of a code's last use, and a
        campaign's redemptions in a time range, newest first, each read or write at most two
        partitions of each table; the same lookup
    without the time bounds reads every month (the measure can see it)."""
    own, data = loaded
    newest, last_month = data["campaigns"][0], data["campaigns"][1]

    async def measure(connection: asyncpg.Connection) -> dict[str, dict[str, set[str]]]:
        found = {}
        replays = await connection.fetch(
            "SELECT * FROM redemptions WHERE campaign_id = $1 LIMIT 250", newest
        )
        rows = [
            RedemptionRow(r["campaign_id"], r["serial"] + offset, 1, r["terminal_id"],
                          r["store_id"], r["accepting_merchant_id"], r["redeemed_at"], "1-0")
            for offset in (0, 1_000_000_000) for r in replays
        ]  # fmt: skip
        insert, values = _INSERTS[RedemptionRow]
        async with Touches(connection) as batch:
            await batch.explain(insert, *map(list, zip(*map(values, rows), strict=True)))
            settled = [
                (r.campaign_id, r.serial, r.use_no, r.redeemed_at, r.merchant_id, r.store_id,
                 r.terminal_id)
                for r in rows
            ]  # fmt: skip
            columns = list(map(list, zip(*settled, strict=True)))
            times = columns[3]
            await batch.explain(_POST_REDEMPTIONS, *columns[:5])
            await batch.explain(_CREATED, columns[0], "redemption.created", 60.0, *columns[1:])
            # Reversals of the same keys (none was reversed: the reads are what is measured).
            bounds = (min(times), max(times))
            await batch.explain(_POST_REVERSALS, *columns[:4], *bounds)
            booked = await connection.fetch(
                "SELECT id, redeemed_at FROM ledger_transactions"
                " WHERE campaign_id = $1 AND serial >= 1000000000"
                " AND redeemed_at >= $2 AND redeemed_at < $2 + interval '1 month'",
                newest, datetime.combine(data["month"], datetime.min.time(), UTC),
            )  # fmt: skip
            assert len(booked) == 250
            ids, booked_times = (list(c) for c in zip(*booked, strict=True))
            await batch.explain(_REVERSED, ids, "redemption.reversed", 60.0, booked_times, *bounds)
        found["settlement batch"] = batch.by_table()
        async with Touches(connection) as stats:
            await stats.explain(_STATS, newest, data["merchant"])
        found["campaign stats"] = stats.by_table()
        first_of_month = add_months(data["month"], -2)
        async with Touches(connection) as report:
            await report.explain(reports._PAIRS, data["merchant"], first_of_month)
            await report.explain(reports._FEES, data["merchant"], first_of_month)
        found["daily report"] = report.by_table()
        # The newest use of a campaign begun last month: the search starts at the newest month
        # (and the next, in a month's last hour) and stops at the first that holds a use.
        used = await connection.fetchrow(
            "SELECT campaign_id, serial FROM redemptions WHERE campaign_id = $1"
            " ORDER BY redeemed_at DESC LIMIT 1",
            last_month,
        )
        async with Touches(connection) as lookup:
            await lookup.explain(_LAST_USE, used["campaign_id"], used["serial"])
        found["last use of a code"] = lookup.by_table()
        async with Touches(connection) as listing:
            await listing.explain(
                "SELECT * FROM redemptions WHERE campaign_id = $1 AND redeemed_at >= $2"
                " AND redeemed_at < $3 ORDER BY redeemed_at DESC LIMIT 50",
                last_month, datetime.now(UTC) - timedelta(days=20), datetime.now(UTC),
            )  # fmt: skip
        found["redemptions listed"] = listing.by_table()
        async with Touches(connection) as control:
            await control.explain(
                "SELECT * FROM redemptions WHERE campaign_id = $1 AND serial = $2",
                used["campaign_id"], used["serial"],
            )  # fmt: skip
        found["control"] = control.by_table()
        return found

    found = asyncio.run(_with_connection(own, measure))
    control = found.pop("control")
    assert len(control["redemptions"]) >= 6, control
    for query, tables in found.items():
        assert tables, f"{query}: the measure saw nothing"
        wide = {table: sorted(names) for table, names in tables.items() if len(names) > 2}
        assert not wide, f"{query} reads more than two months: {wide}"


def test_two_workers_make_the_same_months_at_once(fresh: Stores) -> None:
    """Two workers' month keepers (each on its own pool, as two processes have) make the same
    twelve months at the same moment: neither fails, and each month is one partition of each
    table."""

    async def race() -> list[asyncpg.Record]:
        pools = [await db.create_pool(fresh.database_url, 2) for _ in range(2)]
        try:
            months = [date(2030, month, 1) for month in range(1, 13)]
            await asyncio.gather(*(Months(pool, 2).ensure(months) for pool in pools))
            return await pools[0].fetch(
                "SELECT parent.relname AS parent, count(*) FROM pg_inherits"
                " JOIN pg_class child ON child.oid = inhrelid"
                " JOIN pg_class parent ON parent.oid = inhparent"
                " WHERE child.relname LIKE '%\\_2030\\_%' AND child.relkind = 'r'"
                " GROUP BY 1 ORDER BY 1"
            )
        finally:
            for pool in pools:
                await pool.close()

    assert [tuple(row) for row in asyncio.run(race())] == [
        ("ledger_entries", 12), ("ledger_transactions", 12), ("redemptions", 12), ("reversals", 12)
    ]  # fmt: skip
