"""`qrloop reconcile`: compare the code state in Redis with the ledger of record in PostgreSQL.

Redis runs ahead of PostgreSQL by the settlement backlog, so a used bit without a settled row
is normal for a moment ("unsettled"); a settled, unreversed redemption without its bit means
Redis lost state ("lost"), and that code could be redeemed again. `--rehydrate` rebuilds every
partition that lost its epoch marker from PostgreSQL, after which the till serves again.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from qrloop import keyspace
from qrloop.redis_client import Client
from qrloop.settlement.state import missing_epochs

_USED = """
SELECT r.serial FROM redemptions r
LEFT JOIN reversals v USING (campaign_id, serial, use_no, redeemed_at)
WHERE r.campaign_id = $1 AND v.use_no IS NULL
"""


@dataclass(frozen=True, slots=True)
class Difference:
    """Codes of one campaign whose used state Redis and PostgreSQL disagree on."""

    campaign_id: int
    unsettled: int  # used in Redis, not (yet) settled in PostgreSQL
    lost: int  # settled as used in PostgreSQL, free in Redis
    lost_examples: list[int]


@dataclass(frozen=True, slots=True)
class Report:
    lost_partitions: list[int]
    differences: list[Difference]

    @property
    def consistent(self) -> bool:
        return not self.lost_partitions and not any(d.lost for d in self.differences)


async def reconcile(pool: asyncpg.Pool, client: Client, partitions: int) -> Report:
    differences = []
    for campaign in await pool.fetch("SELECT id, next_serial FROM campaigns ORDER BY id"):
        in_redis = await _used_in_redis(client, partitions, campaign["id"], campaign["next_serial"])
        settled = {row["serial"] for row in await pool.fetch(_USED, campaign["id"])}
        unsettled, lost = in_redis - settled, settled - in_redis
        if unsettled or lost:
            differences.append(
                Difference(campaign["id"], len(unsettled), len(lost), sorted(lost)[:5])
            )
    return Report(await missing_epochs(client, partitions), differences)


async def _used_in_redis(
    client: Client, partitions: int, campaign_id: int, next_serial: int
) -> set[int]:
    used: set[int] = set()
    for first in range(0, next_serial, 1 << keyspace.CHUNK_BITS):
        partition = keyspace.partition_of(campaign_id, first, partitions)
        stored = await client.get(keyspace.used_bitmap(partition, campaign_id, first))
        bitmap = stored if isinstance(stored, bytes) else b""
        for index, byte in enumerate(bitmap):
            if byte:
                used.update(first + index * 8 + bit for bit in range(8) if byte & (0x80 >> bit))
    return used


def describe(report: Report) -> str:
    lines = []
    if report.lost_partitions:
        lines.append(
            f"partitions without their epoch marker (state lost, refusing codes):"
            f" {report.lost_partitions}; run `qrloop reconcile --rehydrate`"
        )
    for d in report.differences:
        lines.append(
            f"campaign {d.campaign_id}: {d.unsettled} used but not settled yet,"
            f" {d.lost} settled but free in Redis"
            + (f" (serials {d.lost_examples}...)" if d.lost else "")
        )
    return "\n".join(lines) or "Redis and PostgreSQL agree on every code's use."
