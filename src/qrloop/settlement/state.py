"""The per-partition epoch marker, and rebuilding lost Redis state from PostgreSQL."""

from __future__ import annotations

import time

import asyncpg
import redis.asyncio as redis

from qrloop import keyspace

# Per code with any history: used (its latest redemption stands), voided, reversal count.
_STATE_QUERY = """
SELECT campaign_id, serial,
       bool_or(redeemed AND NOT reversed) AS used,
       bool_or(voided) AS voided,
       count(*) FILTER (WHERE reversed) AS reversals
FROM (
    SELECT r.campaign_id, r.serial, true AS redeemed, v.use_no IS NOT NULL AS reversed,
           false AS voided
    FROM redemptions r
    LEFT JOIN reversals v USING (campaign_id, serial, use_no)
    UNION ALL
    SELECT campaign_id, serial, false, false, true FROM voids
) AS history
GROUP BY campaign_id, serial
"""


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
    async with client.pipeline(transaction=False) as pipe, pool.acquire() as connection:
        async with connection.transaction():
            async for row in connection.cursor(_STATE_QUERY):
                campaign_id, serial = row["campaign_id"], row["serial"]
                partition = keyspace.partition_of(campaign_id, serial, partitions)
                if partition not in missing:
                    continue
                offset = keyspace.bit_offset(serial)
                if row["used"]:
                    pipe.setbit(keyspace.used_bitmap(partition, campaign_id, serial), offset, 1)
                if row["voided"]:
                    pipe.setbit(keyspace.void_bitmap(partition, campaign_id, serial), offset, 1)
                if row["reversals"]:
                    counts = keyspace.reversal_counts(partition, campaign_id, serial)
                    pipe.hset(counts, str(serial), row["reversals"])
        for partition in sorted(missing):
            pipe.set(keyspace.epoch(partition), str(time.time_ns()), nx=True)
        await pipe.execute()
    return sorted(missing)
