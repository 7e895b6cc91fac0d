"""The per-partition epoch marker, and rebuilding lost Redis state from PostgreSQL."""

from __future__ import annotations

import time

import asyncpg
import redis.asyncio as redis

from qrloop import keyspace


async def missing_epochs(client: redis.Redis, partitions: int) -> list[int]:
    async with client.pipeline(transaction=False) as pipe:
        for partition in range(partitions):
            pipe.exists(keyspace.epoch(partition))
        present = await pipe.execute()
    return [p for p, exists in enumerate(present) if not exists]


async def ensure_epochs(pool: asyncpg.Pool, client: redis.Redis, partitions: int) -> list[int]:
    """Give every partition its epoch marker, first rebuilding its bits where state was lost.

    Run before any API process serves: a partition without a marker refuses every code.
    Returns the partitions that were (re)initialised.
    """
    missing = set(await missing_epochs(client, partitions))
    if not missing:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for kind, query in (
            (keyspace.used_bitmap, "SELECT campaign_id, serial FROM redemptions"),
            (keyspace.void_bitmap, "SELECT campaign_id, serial FROM voids"),
        ):
            async with pool.acquire() as connection, connection.transaction():
                async for row in connection.cursor(query):
                    campaign_id, serial = row["campaign_id"], row["serial"]
                    partition = keyspace.partition_of(campaign_id, serial, partitions)
                    if partition in missing:
                        pipe.setbit(
                            kind(partition, campaign_id, serial), keyspace.bit_offset(serial), 1
                        )
        for partition in sorted(missing):
            pipe.set(keyspace.epoch(partition), str(time.time_ns()), nx=True)
        await pipe.execute()
    return sorted(missing)
