"""The per-partition epoch marker, and rebuilding lost Redis state from PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg

from qrloop import keyspace
from qrloop.redis_client import AnyPipeline, Client
from qrloop.settings import Settings

# Per code that was ever redeemed: does its latest use stand, and how often was it reversed.
_USES = """
SELECT r.campaign_id, r.serial,
       bool_or(v.use_no IS NULL) AS used,
       count(v.use_no) AS reversals
FROM redemptions r
LEFT JOIN reversals v USING (campaign_id, serial, use_no, redeemed_at)
GROUP BY r.campaign_id, r.serial
"""
# Settlement holds this shared from reading a batch to committing it; a rebuild holds it
# exclusively, so it sees every batch read before the loss committed.
REBUILD_LOCK = 0x71726C6F6F71  # next to db.py's migration lock

_VOIDS = "SELECT campaign_id, first_serial, last_serial FROM voids"
_CLAIMS = "SELECT campaign_id, serial, consumer_hash FROM claims"


@asynccontextmanager
async def connected(
    settings: Settings, pool_size: int = 1
) -> AsyncIterator[tuple[asyncpg.Pool, Client]]:
    """A pool and a Redis client on the stores `settings` name, closed afterwards."""
    from qrloop import db
    from qrloop.redis_client import Tls, connect

    assert settings.database_url and settings.redis_url
    client = await connect(settings.redis_url, Tls.of(settings))
    cache = settings.statement_cache
    pool = await db.create_pool(settings.database_url, pool_size, statement_cache=cache)
    try:
        yield pool, client
    finally:
        await client.aclose()
        await pool.close()


async def epochs_of(settings: Settings) -> list[int]:
    """`ensure_epochs` on the stores `settings` name, over connections of its own."""
    async with connected(settings) as (pool, client):
        return await ensure_epochs(pool, client, settings.partitions)


async def missing_epochs(client: Client, partitions: int) -> list[int]:
    async with client.pipeline(transaction=False) as pipe:
        for partition in range(partitions):
            pipe.exists(keyspace.epoch(partition))
        present = await pipe.execute()
    return [p for p, exists in enumerate(present) if not exists]


async def ensure_epochs(pool: asyncpg.Pool, client: Client, partitions: int) -> list[int]:
    """Give every partition its epoch marker, first rebuilding its bits where state was lost.

    Run before any API process serves: a partition without a marker refuses every code.
    Returns the partitions that were (re)initialised.
    """
    missing = set(await missing_epochs(client, partitions))
    if not missing:
        return []
    async with (
        client.pipeline(transaction=False) as pipe,
        pool.acquire() as connection,
        connection.transaction(),
    ):
        await connection.execute("SELECT pg_advisory_xact_lock($1)", REBUILD_LOCK)
        # Another process may have rebuilt some while this one waited for the lock.
        missing &= set(await missing_epochs(client, partitions))
        if not missing:
            return []
        async for row in connection.cursor(_USES):
            campaign_id, serial = row["campaign_id"], row["serial"]
            partition = keyspace.partition_of(campaign_id, serial, partitions)
            if partition not in missing:
                continue
            if row["used"]:
                used = keyspace.used_bitmap(partition, campaign_id, serial)
                pipe.setbit(used, keyspace.bit_offset(serial), 1)
            if row["reversals"]:
                counts = keyspace.reversal_counts(partition, campaign_id, serial)
                pipe.hset(counts, str(serial), row["reversals"])
        async for row in connection.cursor(_CLAIMS):
            campaign_id, serial = row["campaign_id"], row["serial"]
            partition = keyspace.partition_of(campaign_id, serial, partitions)
            if partition in missing:
                claimed = keyspace.claimed_bitmap(partition, campaign_id, serial)
                pipe.setbit(claimed, keyspace.bit_offset(serial), 1)
                owners = keyspace.claim_owners(partition, campaign_id, serial)
                pipe.hset(owners, str(serial), row["consumer_hash"])
        async for row in connection.cursor(_VOIDS):
            _fill(
                pipe,
                row["campaign_id"],
                row["first_serial"],
                row["last_serial"],
                partitions,
                missing,
            )
        for partition in sorted(missing):
            pipe.set(keyspace.epoch(partition), str(time.time_ns()), nx=True)
        await pipe.execute()
    return sorted(missing)


def _fill(
    pipe: AnyPipeline, campaign_id: int, first: int, last: int, partitions: int, missing: set[int]
) -> None:
    """Set the void bits of [first, last] in the partitions being rebuilt."""
    for low, high in keyspace.chunk_spans(first, last):
        partition = keyspace.partition_of(campaign_id, low, partitions)
        if partition not in missing:
            continue
        key = keyspace.void_bitmap(partition, campaign_id, low)
        start, end = keyspace.bit_offset(low), keyspace.bit_offset(high)
        for bit in _edge_bits(start, end):
            pipe.setbit(key, bit, 1)
        whole = _whole_bytes(start, end)
        if whole is not None:
            pipe.setrange(key, whole[0], b"\xff" * whole[1])


def _whole_bytes(start: int, end: int) -> tuple[int, int] | None:
    """(byte offset, byte count) of the whole bytes inside bits [start, end]."""
    low, high = (start + 7) // 8, (end + 1) // 8
    return (low, high - low) if high > low else None


def _edge_bits(start: int, end: int) -> Iterator[int]:
    """The bits of [start, end] outside its whole bytes."""
    whole = _whole_bytes(start, end)
    if whole is None:
        yield from range(start, end + 1)
        return
    yield from range(start, whole[0] * 8)
    yield from range((whole[0] + whole[1]) * 8, end + 1)
