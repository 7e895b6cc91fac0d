"""Void codes, a serial range or a whole order; everything is checked before anything is voided."""

from __future__ import annotations

import asyncpg

from qrloop import keyspace, lua
from qrloop.codes.format import CodeRef
from qrloop.codes.keyring import KeyRing
from qrloop.codes.verify_pool import VerifierPool
from qrloop.errors import Problem, Reason
from qrloop.issuance import orders
from qrloop.issuance.campaigns import now_ms
from qrloop.issuance.schemas import VoidIn
from qrloop.redis_client import Client, loaded

_SCRIPT = lua.source(__package__, "void.lua", keyspace.VoidKeys._fields)
PIPELINE_CALLS = 500


async def decode_all(verifiers: VerifierPool, keyring: KeyRing, codes: list[str]) -> set[CodeRef]:
    """The codes' (campaign, serial), or 422 naming the first that is not a valid code."""
    found = await verifiers.verify_all(keyring, codes)
    if isinstance(found, int):
        raise Problem(Reason.INVALID, f"codes[{found}] is not a valid code.", index=found)
    return found


async def void_ranges(client: Client, partitions: int, ranges: list[tuple[int, int, int]]) -> int:
    """Void each (campaign, first, last); return how many codes were not void before.

    The calls go out in pipelines of PIPELINE_CALLS: between two, the event loop answers the
    tills instead of packing and parsing thousands of commands in one go."""
    script = await loaded(client, _SCRIPT)
    at = now_ms()
    spans = [
        (campaign_id, low, high)
        for campaign_id, first, last in ranges
        for low, high in keyspace.chunk_spans(first, last)
    ]
    voided = 0
    for start in range(0, len(spans), PIPELINE_CALLS):
        async with client.pipeline(transaction=False) as pipe:
            for campaign_id, low, high in spans[start : start + PIPELINE_CALLS]:
                partition = keyspace.partition_of(campaign_id, low, partitions)
                keys = keyspace.void_keys(partition, campaign_id, low)
                bits = [keyspace.bit_offset(low), keyspace.bit_offset(high)]
                pipe.execute_command(
                    "EVALSHA", script, len(keys), *keys, *bits, campaign_id, low, high, at
                )
            voided += sum(int(result) for result in await pipe.execute())
    return voided


def coalesced(refs: set[CodeRef]) -> list[tuple[int, int, int]]:
    """(campaign, first, last) runs of consecutive serials: codes of one order, voided one by
    one, take one call instead of thousands."""
    runs: list[tuple[int, int, int]] = []
    for campaign_id, serial in sorted({(ref.campaign_id, ref.serial) for ref in refs}):
        if runs and runs[-1][0] == campaign_id and runs[-1][2] == serial - 1:
            runs[-1] = (campaign_id, runs[-1][1], serial)
        else:
            runs.append((campaign_id, serial, serial))
    return runs


async def owned_campaigns(pool: asyncpg.Pool, merchant_id: int, campaign_ids: set[int]) -> None:
    """404 unless every campaign belongs to the merchant."""
    owned = await pool.fetchval(
        "SELECT count(*) FROM campaigns WHERE id = ANY($1::bigint[]) AND merchant_id = $2",
        sorted(campaign_ids),
        merchant_id,
    )
    if owned != len(campaign_ids):
        raise Problem(Reason.NOT_FOUND, "Some codes belong to no campaign of this account.")


async def issued_range(
    pool: asyncpg.Pool, merchant_id: int, campaign_id: int, first: int, last: int
) -> tuple[int, int, int]:
    """The range, once checked to be the merchant's and below the campaign's next serial."""
    next_serial = await pool.fetchval(
        "SELECT next_serial FROM campaigns WHERE id = $1 AND merchant_id = $2",
        campaign_id,
        merchant_id,
    )
    if next_serial is None:
        raise Problem(Reason.NOT_FOUND, f"No campaign {campaign_id} in this account.")
    if not 0 <= first <= last < next_serial:
        raise Problem(
            Reason.BAD_REQUEST,
            f"The range must lie within the issued serials 0..{next_serial - 1}.",
        )
    return campaign_id, first, last


async def requested_ranges(
    pool: asyncpg.Pool,
    verifiers: VerifierPool,
    keyring: KeyRing,
    merchant_id: int,
    request: VoidIn,
) -> list[tuple[int, int, int]]:
    """The (campaign, first, last) ranges a void request names, all checked to be the caller's."""
    given = [request.codes is not None, request.range is not None, request.order_id is not None]
    if sum(given) != 1:
        raise Problem(Reason.BAD_REQUEST, "Give exactly one of `codes`, `range` or `order_id`.")
    if request.codes is not None:
        refs = await decode_all(verifiers, keyring, request.codes)
        await owned_campaigns(pool, merchant_id, {ref.campaign_id for ref in refs})
        return coalesced(refs)
    if request.range is not None:
        span = request.range
        checked = await issued_range(
            pool, merchant_id, span.campaign_id, span.first_serial, span.last_serial
        )
        return [checked]
    assert request.order_id is not None
    order = await orders.find(pool, merchant_id, request.order_id)
    return [(order.campaign_id, order.first_serial, order.first_serial + order.quantity - 1)]
