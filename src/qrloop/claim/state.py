"""A code's state for its consumer, and the atomic claim and pool scripts."""

from __future__ import annotations

import time

from qrloop import keyspace, lua
from qrloop.claim.consumers import Consumer
from qrloop.codes.format import CodeRef
from qrloop.errors import Problem, Reason
from qrloop.redis_client import Client

_CLAIM = lua.source(__package__, "claim.lua", keyspace.ClaimKeys._fields)
_POOL = lua.source(__package__, "pool.lua", keyspace.PoolKeys._fields)
_POOL_SKIP = lua.source(__package__, "pool_skip.lua", keyspace.PoolKeys._fields)


class CodeState:
    """What Redis knows of one code, read in one round trip."""

    def __init__(self, owner: str | None, used: bool, voided: bool) -> None:
        self.owner = owner
        self.used = used
        self.voided = voided


async def read(client: Client, partitions: int, ref: CodeRef) -> CodeState:
    campaign_id, serial = ref.campaign_id, ref.serial
    partition = keyspace.partition_of(campaign_id, serial, partitions)
    offset = keyspace.bit_offset(serial)
    async with client.pipeline(transaction=False) as pipe:
        pipe.exists(keyspace.epoch(partition))
        pipe.hget(keyspace.claim_owners(partition, campaign_id, serial), str(serial))
        pipe.getbit(keyspace.used_bitmap(partition, campaign_id, serial), offset)
        pipe.getbit(keyspace.void_bitmap(partition, campaign_id, serial), offset)
        epoch, owner, used, voided = await pipe.execute()
    if not epoch:
        raise Problem(Reason.UNAVAILABLE, "Code state is being restored; try again shortly.")
    return CodeState(owner.decode() if owner else None, bool(used), bool(voided))


async def claim(client: Client, partitions: int, ref: CodeRef, consumer: str) -> str:
    """'claimed' (now or before, by this consumer), 'taken', 'voided', 'used' or 'unavailable'."""
    campaign_id, serial = ref.campaign_id, ref.serial
    partition = keyspace.partition_of(campaign_id, serial, partitions)
    keys = keyspace.claim_keys(partition, campaign_id, serial)
    args: list[str | int] = [
        keyspace.bit_offset(serial),
        campaign_id,
        serial,
        consumer,
        int(time.time() * 1000),
    ]
    outcome: bytes = await client.register_script(_CLAIM)(keys=keys, args=args)
    return outcome.decode()


async def reserve_from_pool(
    client: Client, pool_id: str, consumer: Consumer, per_consumer: int, size: int
) -> tuple[str, list[int]]:
    """('assigned', [offset]) | ('limit', offsets already held) | ('empty', []): one script
    in the pool's own hash slot."""
    args: list[str | int] = [per_consumer, size, *consumer.hashes]
    answer = await client.register_script(_POOL)(keys=keyspace.pool_keys(pool_id), args=args)
    outcome = answer[0].decode()
    if outcome == "assigned":
        return outcome, [int(answer[1])]
    if outcome == "limit":
        return outcome, [int(part) for part in answer[1].decode().split(",")]
    return outcome, []


async def skip_in_pool(
    client: Client, pool_id: str, consumer: Consumer, size: int, offset: int
) -> int | None:
    """Move the person's place from `offset` to the pool's next one; None when none is left
    (their place is then given back)."""
    answer = await client.register_script(_POOL_SKIP)(
        keys=keyspace.pool_keys(pool_id), args=[size, consumer.newest, offset]
    )
    return int(answer[1]) if answer[0] == b"assigned" else None


async def held_in_pool(client: Client, pool_id: str, consumer: Consumer) -> list[int]:
    """The offsets the person holds in the pool, under any of their hashes."""
    taken = keyspace.pool_keys(pool_id).taken
    held: list[bytes | None] = await client.hmget(taken, list(consumer.hashes))  # type: ignore[assignment]
    return [int(part) for value in held if value for part in value.decode().split(",")]


async def handed_out(client: Client, pool_id: str) -> int:
    return int(await client.get(keyspace.pool_keys(pool_id).counter) or 0)


async def handed_out_each(client: Client, pool_ids: list[str]) -> list[int]:
    """How many codes each pool has handed out, in one round trip (each key in its own slot,
    so a pipeline, never one multi-key command)."""
    async with client.pipeline(transaction=False) as pipe:
        for pool_id in pool_ids:
            pipe.get(keyspace.pool_keys(pool_id).counter)
        counts: list[bytes | None] = await pipe.execute()
    return [int(count or 0) for count in counts]
