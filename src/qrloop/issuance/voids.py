"""Void codes: all of a request's codes are checked before any is voided."""

from __future__ import annotations

from importlib import resources

import asyncpg
import redis.asyncio as redis

from qrloop import keyspace
from qrloop.codes.format import CodeRef, InvalidCode, RetiredKey, RevokedKey, Verifier, parse_input
from qrloop.errors import Problem, Reason
from qrloop.issuance.campaigns import now_ms

_SCRIPT = resources.files(__package__).joinpath("void.lua").read_text()


def _decode_all(verifier: Verifier, codes: list[str]) -> list[CodeRef]:
    refs = []
    for index, raw in enumerate(codes):
        try:
            refs.append(verifier.verify(parse_input(raw)))
        except (InvalidCode, RevokedKey, RetiredKey):
            raise Problem(
                Reason.INVALID, f"codes[{index}] is not a valid code.", index=index
            ) from None
    return refs


async def void(
    pool: asyncpg.Pool,
    client: redis.Redis,
    verifier: Verifier,
    partitions: int,
    merchant_id: int,
    codes: list[str],
) -> int:
    """Void the codes (deduplicated on campaign and serial); return how many were newly voided."""
    refs = set(_decode_all(verifier, codes))
    campaigns = sorted({ref.campaign_id for ref in refs})
    owned = await pool.fetchval(
        "SELECT count(*) FROM campaigns WHERE id = ANY($1::bigint[]) AND merchant_id = $2",
        campaigns,
        merchant_id,
    )
    if owned != len(campaigns):
        raise Problem(Reason.NOT_FOUND, "Some codes belong to no campaign of this account.")
    script = client.register_script(_SCRIPT)
    at = now_ms()
    async with client.pipeline(transaction=False) as pipe:
        for ref in refs:
            partition = keyspace.partition_of(ref.campaign_id, ref.serial, partitions)
            keys = [
                keyspace.void_bitmap(partition, ref.campaign_id, ref.serial),
                keyspace.events(partition),
            ]
            args = [keyspace.bit_offset(ref.serial), ref.campaign_id, ref.serial, at]
            await script(keys=keys, args=args, client=pipe)
        results = await pipe.execute()
    return sum(int(result) for result in results)
