"""Capacity: what a code costs in Valkey memory, and a redemption in PostgreSQL bytes.

    python benchmarks/capacity.py [--codes 10000000] [--redemptions 100000] [--no-write]

Starts the embedded default (Valkey with AOF, PostgreSQL) in a temporary folder, then:

  Valkey   For --codes codes of one campaign, sets each state bit with SETBIT, as the Lua
           scripts do (looped inside Valkey; keys from qrloop.keyspace, partitioned as qrloop
           partitions them), and sums MEMORY USAGE of the bitmaps: bits per issued code.
           Then the per-code keys: a redeemed code's latest use (SET with the 25 h TTL, the
           packed value redeem.lua writes, a 22-character till nonce), a claimed code's owner
           (HSET of a 32-hex keyed hash), and an unsettled redemption's stream entry (XADD),
           each for a sample of --redemptions codes: bytes per code.
  Postgres Settles --redemptions redemptions through qrloop's own settlement worker code
           (Worker.settle: redemption rows, ledger postings, in batches of 500 as the worker
           takes them) and reads the size of every table and index that grew: bytes per
           redemption, per ledger transaction and per ledger entry.

Writes the "## Capacity" section of benchmarks/RESULTS.md; docs/capacity.md sizes from it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis.asyncio as redis
from results import write_section

from qrloop import db, keyspace
from qrloop.embedded import EmbeddedServers
from qrloop.settlement.worker import Worker

PARTITIONS = 16
CAMPAIGN = 7
BATCH = 500  # what the worker reads at a time
PIPELINE = 10_000
NONCE = "till-0042-7f3a9c21b8e4"  # 22 characters: a till's usual retry key


async def _used_memory(client: redis.Redis) -> int:
    await client.execute_command("MEMORY", "PURGE")
    info = await client.info("memory")
    return int(info["used_memory"])


async def _per_code(client: redis.Redis, codes: int, write: object) -> float:
    """Bytes of Valkey memory per code after `write(pipe, serial)` for serials 0..codes."""
    before = await _used_memory(client)
    for start in range(0, codes, PIPELINE):
        pipe = client.pipeline(transaction=False)
        for serial in range(start, min(start + PIPELINE, codes)):
            write(pipe, keyspace.partition_of(CAMPAIGN, serial, PARTITIONS), serial)  # type: ignore[operator]
        await pipe.execute()
    return (await _used_memory(client) - before) / codes


# SETBIT for each serial of a chunk, looped inside Valkey: the bits the Lua scripts set, one
# command per code, without a round trip per code from Python.
_BITS_PER_CALL = 1 << 16  # a divisor of the chunk, so each call's bits share one key
_SET_BITS = "for offset = ARGV[1], ARGV[2] do redis.call('SETBIT', KEYS[1], offset, 1) end"


async def _set_every_bit(
    client: redis.Redis, bitmap: Callable[[int, int, int], str], codes: int
) -> set[str]:
    """Set the bit of every code in serial order; return the bitmaps' keys."""
    keys = set()
    for first in range(0, codes, _BITS_PER_CALL):
        last = min(first + _BITS_PER_CALL, codes) - 1
        key = bitmap(keyspace.partition_of(CAMPAIGN, first, PARTITIONS), CAMPAIGN, first)
        await client.eval(_SET_BITS, 1, key, keyspace.bit_offset(first), keyspace.bit_offset(last))
        keys.add(key)
    return keys


async def measure_valkey(redis_url: str, codes: int, sample: int) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    now_ms = int(time.time() * 1000)
    try:
        await client.flushdb()
        per_code = {}
        for name, bitmap in (
            ("used bitmap", keyspace.used_bitmap),
            ("void bitmap", keyspace.void_bitmap),
            ("claimed bitmap", keyspace.claimed_bitmap),
        ):
            keys = await _set_every_bit(client, bitmap, codes)
            used = sum([await client.memory_usage(key) or 0 for key in keys])
            per_code[f"{name} (bits per issued code)"] = 8 * used / codes
        per_code["latest use of a redeemed code (bytes, kept 25 h)"] = await _per_code(
            client,
            sample,
            lambda pipe, p, serial: pipe.set(
                keyspace.last_use(p, CAMPAIGN, serial),
                f"1|1042|311|{now_ms}|0|{NONCE}",
                ex=keyspace.LAST_USE_TTL_SECONDS,
            ),
        )
        per_code["owner of a claimed code (bytes)"] = await _per_code(
            client,
            sample,
            lambda pipe, p, serial: pipe.hset(
                keyspace.claim_owners(p, CAMPAIGN, serial), str(serial), secrets.token_hex(16)
            ),
        )
        per_code["stream entry of an unsettled redemption (bytes)"] = await _per_code(
            client,
            sample,
            lambda pipe, p, serial: pipe.xadd(
                keyspace.events(p),
                {"redeem": f"{CAMPAIGN}|{serial}|1|1042|311|9|{now_ms}"},
            ),
        )
        return per_code
    finally:
        await client.flushdb()
        await client.aclose()


async def _fixture(connection: asyncpg.Connection) -> tuple[int, int, int]:
    """A merchant, a store, a terminal and campaign CAMPAIGN's row, as the API makes them."""
    merchant = await connection.fetchval(
        "INSERT INTO merchants (name) VALUES ('capacity') RETURNING id"
    )
    store = await connection.fetchval(
        "INSERT INTO stores (merchant_id, name) VALUES ($1, 'store') RETURNING id", merchant
    )
    terminal = await connection.fetchval(
        "INSERT INTO terminals (store_id, merchant_id, name, secret_digest)"
        " VALUES ($1, $2, 'till', $3) RETURNING id",
        store,
        merchant,
        secrets.token_bytes(32),
    )
    await connection.execute(
        "INSERT INTO campaigns (id, merchant_id, name, face_value, currency, algorithm)"
        " OVERRIDING SYSTEM VALUE VALUES ($1, $2, 'capacity', 1000, 'CNY', 'hmac-sha256')",
        CAMPAIGN,
        merchant,
    )
    return merchant, store, terminal


_GROWING = (
    "redemptions",
    "redemption_uses",
    "ledger_transactions",
    "ledger_entries",
    "webhook_events",
    "webhook_deliveries",
)


async def _sizes(connection: asyncpg.Connection) -> dict[str, int]:
    """Heap + indexes + TOAST of each table, summed over its partitions where it has some."""
    await connection.execute("CHECKPOINT")
    sizes = {}
    for table in _GROWING:
        exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        if exists:
            sizes[table] = await connection.fetchval(
                "SELECT coalesce((SELECT sum(pg_total_relation_size(relid))::bigint"
                " FROM pg_partition_tree($1::regclass)), pg_total_relation_size($1::regclass))",
                table,
            )
    return sizes


async def _count(connection: asyncpg.Connection, table: str) -> int:
    return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))


async def measure_postgres(database_url: str, redis_url: str, count: int) -> dict[str, object]:
    await db.migrate(database_url, progress=lambda _: None)
    connection = await asyncpg.connect(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    client = redis.Redis.from_url(redis_url)
    try:
        merchant, store, terminal = await _fixture(connection)
        before = await _sizes(connection)
        worker = Worker(pool, client, PARTITIONS)
        now_ms = int(time.time() * 1000)
        stream = keyspace.events(0).encode()
        started = time.perf_counter()
        for first in range(0, count, BATCH):
            entries = [
                (
                    f"{now_ms}-{serial}".encode(),
                    {
                        b"redeem": f"{CAMPAIGN}|{serial}|1|{terminal}|{store}|{merchant}|"
                        f"{now_ms + serial}".encode()
                    },
                )
                for serial in range(first, min(first + BATCH, count))
            ]
            await worker.settle([(stream, entries)])
        elapsed = time.perf_counter() - started
        after = await _sizes(connection)
        rows = {table: await _count(connection, table) for table in after}
        grown = {table: after[table] - before.get(table, 0) for table in after}
        return {"grown": grown, "rows": rows, "settled_per_s": count / elapsed}
    finally:
        await client.aclose()
        await pool.close()
        await connection.close()


def _section(codes: int, sample: int, valkey: dict[str, float], pg: dict[str, object]) -> str:
    grown: dict[str, int] = pg["grown"]  # type: ignore[assignment]
    rows: dict[str, int] = pg["rows"]  # type: ignore[assignment]
    redemptions = rows["redemptions"]
    lines = [
        "## Capacity",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with",
        "",
        "```sh",
        "python benchmarks/capacity.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs;"
        f" Python {platform.python_version()}; embedded Valkey and PostgreSQL",
        f"- Valkey: {codes:,} codes of one campaign in {PARTITIONS} partitions"
        f" (state bitmaps: MEMORY USAGE of their keys), {sample:,} codes for the per-code"
        " keys (INFO used_memory after MEMORY PURGE, before and after)",
        f"- PostgreSQL: {redemptions:,} redemptions settled by qrloop's Worker.settle in"
        f" batches of {BATCH} ({pg['settled_per_s']:,.0f} settled/s in this run), sizes after"
        " CHECKPOINT (heap, indexes and TOAST, all partitions)",
        "",
        "| Valkey: what | memory |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:,.2f} |" for name, value in valkey.items()]
    lines += [
        "",
        "| PostgreSQL table | rows | bytes grown | bytes per redemption |",
        "|---|---:|---:|---:|",
    ]
    total = 0
    for table, size in grown.items():
        if rows[table] == 0 and size <= 16384:
            continue
        total += size
        lines.append(f"| {table} | {rows[table]:,} | {size:,} | {size / redemptions:,.0f} |")
    lines.append(f"| **all** | | {total:,} | **{total / redemptions:,.0f}** |")
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, default=10_000_000)
    parser.add_argument("--redemptions", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="qrloop-capacity-") as folder,
        EmbeddedServers(Path(folder)) as urls,
    ):
        valkey = await measure_valkey(urls.redis_url, args.codes, args.redemptions)
        pg = await measure_postgres(urls.database_url, urls.redis_url, args.redemptions)
    section = _section(args.codes, args.redemptions, valkey, pg)
    print(section)
    if not args.no_write:
        write_section("## Capacity", section)


if __name__ == "__main__":
    asyncio.run(main())
