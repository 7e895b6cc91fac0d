"""Monthly partitions over a million redemptions: the in-place migration, the hot queries'
months and times, detaching a month, and what turning asyncpg's statement cache off costs.

Starts the embedded PostgreSQL (or uses --database-url, a scratch server: the benchmark makes
and drops a `bench_partitions` database), builds the schema as it was before migration 013,
loads --rows redemptions spread over the last twelve months (one in a hundred reversed, all
booked in the ledger), then times `migrate` converting them in place. Over the converted
tables it runs each hot query --repeat times, reporting the months (partitions) its plan
executed and the median time, detaches the oldest month with `qrloop partitions detach`'s
code, and times a last-use lookup with the statement cache on and off. Writes the
"## Monthly partitions" section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/partitions.py [--rows 1000000] [--repeat 50]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from results import write_section

from qrloop import db
from qrloop.embedded import EmbeddedServers
from qrloop.issuance.campaigns import _STATS
from qrloop.redemption.decide import _LAST_USE
from qrloop.settlement import partitions, reports
from qrloop.settlement.events import RedemptionRow
from qrloop.settlement.ledger import _POST_REDEMPTIONS
from qrloop.settlement.worker import _INSERTS
from qrloop.webhooks.outbox import _CREATED

SECTION = "## Monthly partitions"
MONTHS = 12
NAME = "bench_partitions"
_PARTITION = re.compile(r"^(?P<table>[a-z_]+)_\d{4}_\d{2}$")

# The schema before migration 013: one campaign a month, each redeemed evenly from its start to
# now, one in a hundred reversed an hour later; loaded without triggers, as a restore would.
_LOAD = """
SET session_replication_role = replica;
INSERT INTO merchants (name) VALUES ('Bench');
INSERT INTO stores (merchant_id, name) VALUES (1, 'S');
INSERT INTO terminals (merchant_id, store_id, name, secret_digest) VALUES (1, 1, 'T', '');
INSERT INTO campaigns (merchant_id, name, face_value, currency, algorithm, created_at)
SELECT 1, 'C' || k, 500, 'CNY', 'hmac-sha256', now() - make_interval(months => k)
FROM generate_series(0, {months} - 1) k ORDER BY k;
INSERT INTO redemptions (campaign_id, serial, use_no, terminal_id, store_id,
                         accepting_merchant_id, redeemed_at, settled_at, stream_entry)
SELECT c.id, i, 1, 1, 1, 1, t.at, t.at, i || '-0'
FROM generate_series(1, {rows}) i
JOIN campaigns c ON c.id = 1 + i % {months}
CROSS JOIN LATERAL (SELECT c.created_at
    + (now() - interval '2 hours' - c.created_at) * ((i::bigint * 7919) % 10007 / 10007.0) AS at) t;
INSERT INTO reversals (campaign_id, serial, use_no, terminal_id, store_id, reversed_at)
SELECT campaign_id, serial, use_no, terminal_id, store_id, redeemed_at + interval '1 hour'
FROM redemptions WHERE serial % 100 = 0;
INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, booked_at)
SELECT 'redemption', campaign_id, serial, use_no, redeemed_at FROM redemptions
UNION ALL SELECT 'reversal', campaign_id, serial, use_no, reversed_at FROM reversals;
INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
SELECT t.id, 1, e.account, 'CNY', e.amount * CASE t.kind WHEN 'redemption' THEN 1 ELSE -1 END
FROM ledger_transactions t
CROSS JOIN (VALUES ('payable', -500), ('receivable', 500)) AS e (account, amount);
SET session_replication_role = origin;
ANALYZE;
"""


def months_read(plan: str) -> str:
    """Per table, how many partitions a plan from EXPLAIN (ANALYZE, FORMAT JSON) ran a node
    on: "redemptions 1, ledger_entries 2"."""
    found: dict[str, set[str]] = {}
    nodes = [json.loads(plan)[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        match = _PARTITION.match(node.get("Relation Name", ""))
        if node.get("Actual Loops", 0) and match:
            found.setdefault(match["table"], set()).add(node["Relation Name"])
    shown = ", ".join(f"{table} {len(names)}" for table, names in sorted(found.items()))
    return shown or "none in the plan (rows routed by their key)"


async def timed(work: Callable[[], Awaitable[Any]], repeat: int) -> float:
    """Median milliseconds of `work`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def build(url: str, rows: int) -> float:
    """The pre-013 schema with `rows` redemptions; then `migrate`. Returns the migration's
    seconds."""
    await db.migrate(url, progress=lambda _: None, below=13)
    connection = await asyncpg.connect(url)
    try:
        start = time.monotonic()
        await connection.execute(_LOAD.format(rows=rows, months=MONTHS))
        print(f"loaded {rows:,} redemptions in {time.monotonic() - start:.0f} s", flush=True)
    finally:
        await connection.close()
    start = time.monotonic()
    await db.migrate(url, progress=print)
    seconds = time.monotonic() - start
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return seconds


async def hot_queries(connection: asyncpg.Connection, repeat: int) -> list[tuple[str, str, float]]:
    """(query, partitions its plan ran on by table, median ms) for each hot query, and the
    unbounded lookup for contrast."""
    newest = await connection.fetchval("SELECT id FROM campaigns ORDER BY created_at DESC LIMIT 1")
    older = await connection.fetchval(
        "SELECT id FROM campaigns ORDER BY created_at DESC OFFSET 1 LIMIT 1"
    )
    now = datetime.now(UTC)
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    used = await connection.fetchrow(
        "SELECT campaign_id, serial FROM redemptions WHERE campaign_id = $1 AND redeemed_at < $2"
        " ORDER BY redeemed_at DESC LIMIT 1",
        older, month_start,
    )  # fmt: skip
    batch = await connection.fetch(
        "SELECT * FROM redemptions WHERE campaign_id = $1 ORDER BY redeemed_at DESC LIMIT 500",
        newest,
    )
    rows = [
        RedemptionRow(r["campaign_id"], r["serial"], 1, r["terminal_id"], r["store_id"],
                      r["accepting_merchant_id"], r["redeemed_at"], r["stream_entry"])
        for r in batch
    ]  # fmt: skip
    insert, values = _INSERTS[RedemptionRow]
    times = [r.redeemed_at for r in rows]
    keys = [[r.campaign_id for r in rows], [r.serial for r in rows], [1] * len(rows)]
    acceptors = [r.merchant_id for r in rows]
    stores, terminals = [r.store_id for r in rows], [r.terminal_id for r in rows]
    day = (now - timedelta(days=3 * 30)).replace(day=1).date()
    queries: list[tuple[str, str, list[Any]]] = [
        ("settlement insert of 500 settled rows (all conflicts)", insert,
         list(map(list, zip(*map(values, rows), strict=True)))),
        ("ledger posting of those 500 (all booked before)", _POST_REDEMPTIONS,
         [*keys, times, acceptors]),
        ("webhook events of 500 bookings (no endpoint)", _CREATED,
         [keys[0], "redemption.created", 60.0, *keys[1:], times, acceptors, stores, terminals]),
        ("campaign stats, campaign of this month", _STATS, [newest, 1]),
        (f"settlement report of {day} (first of a month)", reports._PAIRS, [1, day]),
        (f"platform fees of {day}", reports._FEES, [1, day]),
        ("last use of a code used last month", _LAST_USE, [used["campaign_id"], used["serial"]]),
        ("a campaign's redemptions of the last 20 days, newest first, 50",
         "SELECT * FROM redemptions WHERE campaign_id = $1 AND redeemed_at >= $2"
         " AND redeemed_at < $3 ORDER BY redeemed_at DESC LIMIT 50",
         [older, now - timedelta(days=20), now]),
        ("contrast: the same code looked up without a time bound",
         "SELECT * FROM redemptions WHERE campaign_id = $1 AND serial = $2",
         [used["campaign_id"], used["serial"]]),
    ]  # fmt: skip
    results = []
    for label, statement, args in queries:
        transaction = connection.transaction()  # rolled back: whatever a statement writes
        await transaction.start()
        plan = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
        months = months_read(plan)

        async def run(statement: str = statement, args: list[Any] = args) -> None:
            await connection.fetch(statement, *args)

        median = await timed(run, repeat)
        await transaction.rollback()
        results.append((label, months, median))
        print(f"{label}: {months}; {median:.2f} ms", flush=True)
    return results


async def cache_cost(url: str, repeat: int) -> tuple[float, float]:
    """Median ms of a last-use lookup through a pool with the statement cache on, then off."""
    medians = []
    for cache in (True, False):
        pool = await db.create_pool(url, 1, statement_cache=cache)
        try:
            row = await pool.fetchrow("SELECT campaign_id, serial FROM redemptions LIMIT 1")
            lookup = functools.partial(pool.fetchrow, _LAST_USE, *row)
            medians.append(await timed(lookup, repeat * 20))
        finally:
            await pool.close()
    return medians[0], medians[1]


async def detach_oldest(url: str) -> tuple[str, float]:
    """End every campaign, then detach the oldest month; its name and seconds."""
    pool = await db.create_pool(url, 1)
    try:
        await pool.execute("UPDATE campaigns SET valid_until = now() - interval '1 second'")
        oldest = await pool.fetchval(
            "SELECT min(date_trunc('month', redeemed_at AT TIME ZONE 'UTC'))::date FROM redemptions"
        )
        start = time.monotonic()
        outcomes = await partitions.detach(pool, partitions.add_months(oldest, 1))
        seconds = time.monotonic() - start
        return partitions.describe(outcomes), seconds
    finally:
        await pool.close()


async def measure(server_url: str, rows: int, repeat: int) -> dict[str, Any]:
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {NAME}")
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{NAME}"))
    try:
        migration = await build(url, rows)
        connection = await asyncpg.connect(url)
        try:
            version = await connection.fetchval("SHOW server_version")
            sizes = await connection.fetchval(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c"
                " JOIN pg_inherits i ON i.inhrelid = c.oid"
            )
            queries = await hot_queries(connection, repeat)
        finally:
            await connection.close()
        cached, uncached = await cache_cost(url, repeat)
        detached, detach_seconds = await detach_oldest(url)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        await admin.close()
    return {
        "migration": migration, "queries": queries, "cached": cached, "uncached": uncached,
        "detached": detached, "detach_seconds": detach_seconds, "version": version, "sizes": sizes,
    }  # fmt: skip


def report(found: dict[str, Any], rows: int, repeat: int, stores: str) -> str:
    lines = [
        SECTION, "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with", "", "```sh",
        f"python benchmarks/partitions.py --rows {rows} --repeat {repeat}", "```", "",
        f"- {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python"
        f" {platform.python_version()}, PostgreSQL {found['version']} ({stores})",
        f"- {rows:,} redemptions over {MONTHS} months, one in a hundred reversed, all booked"
        f" (two entries each): {found['sizes']} in the partitions after the migration",
        f"- migration 013 converting them in place: {found['migration']:.0f} s, in one"
        " transaction (reads and writes of the four tables wait meanwhile)",
        "", "| query | partitions its plan ran on, by table | median ms |", "|---|---|---:|",
    ]  # fmt: skip
    lines += [f"| {label} | {months} | {ms:.2f} |" for label, months, ms in found["queries"]]
    lines += [
        "",
        f"Medians of {repeat} runs each, inside a transaction rolled back (the writes too).",
        "",
        f"Statement cache (a last-use lookup, {repeat * 20} runs through a one-connection"
        f" pool): on {found['cached']:.3f} ms, off (QRLOOP_DATABASE_POOL_MODE=transaction)"
        f" {found['uncached']:.3f} ms.",
        "",
        f"Detaching the oldest month ({found['detach_seconds']:.1f} s): {found['detached']}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--database-url", help="a scratch PostgreSQL (default: embedded)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    folder = None
    servers = None
    try:
        if args.database_url:
            url, stores = args.database_url, "--database-url"
        else:
            folder = Path(tempfile.mkdtemp(prefix="qrloop-bench-"))
            servers = EmbeddedServers(folder)
            url, stores = servers.start().database_url, "embedded default"
        found = asyncio.run(measure(url, args.rows, args.repeat))
    finally:
        if servers is not None:
            servers.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    section = report(found, args.rows, args.repeat, stores)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
