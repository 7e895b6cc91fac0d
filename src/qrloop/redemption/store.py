"""The code state in Redis: one Lua call to consume, one to peek. Fails closed."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import redis.asyncio as redis
from redis.exceptions import RedisError

from qrloop import keyspace
from qrloop.codes.format import CodeRef
from qrloop.errors import Problem, Reason

_UNAVAILABLE = "The code state store cannot answer; no code is accepted until it can."


def _script(client: redis.Redis, name: str) -> redis.client.AsyncScript:  # type: ignore[name-defined]
    return client.register_script(resources.files(__package__).joinpath(name).read_text())


@dataclass(frozen=True, slots=True)
class Consumed:
    """The code is now used by this redemption (or was, by this same retried request)."""

    redemption_id: str
    replayed: bool


class CodeStateStore:
    """Atomic check-and-consume of a code's bit, with the redemption queued in the same step."""

    def __init__(self, client: redis.Redis, partitions: int) -> None:
        self._partitions = partitions
        self._redeem = _script(client, "redeem.lua")
        self._check = _script(client, "check.lua")

    async def consume(
        self,
        ref: CodeRef,
        *,
        redemption_id: str,
        nonce: str,
        terminal_id: int,
        store_id: int,
        merchant_id: int,
        at_ms: int,
    ) -> Consumed:
        """Consume the code, or raise the Problem that says why not."""
        partition = keyspace.partition_of(ref.campaign_id, ref.serial, self._partitions)
        keys = [
            keyspace.epoch(partition),
            keyspace.used_bitmap(partition, ref.campaign_id, ref.serial),
            keyspace.void_bitmap(partition, ref.campaign_id, ref.serial),
            keyspace.events(partition),
            keyspace.idempotency(partition, terminal_id, nonce),
        ]
        args = [
            keyspace.bit_offset(ref.serial),
            f"{ref.campaign_id}:{ref.serial}",
            redemption_id,
            terminal_id,
            store_id,
            merchant_id,
            at_ms,
            keyspace.IDEMPOTENCY_TTL_SECONDS,
        ]
        try:
            answer = await self._redeem(keys=keys, args=args)
        except RedisError:
            raise Problem(Reason.UNAVAILABLE, _UNAVAILABLE, headers={"Retry-After": "1"}) from None
        outcome = answer[0].decode()
        if outcome == "redeemed":
            return Consumed(redemption_id=redemption_id, replayed=False)
        if outcome == "replay":
            return Consumed(redemption_id=answer[1].decode(), replayed=True)
        raise _refusal(outcome)

    async def peek(self, ref: CodeRef) -> str:
        """'valid', 'voided' or 'already_redeemed'; raises Problem(unavailable)."""
        partition = keyspace.partition_of(ref.campaign_id, ref.serial, self._partitions)
        keys = [
            keyspace.epoch(partition),
            keyspace.used_bitmap(partition, ref.campaign_id, ref.serial),
            keyspace.void_bitmap(partition, ref.campaign_id, ref.serial),
        ]
        try:
            state = (await self._check(keys=keys, args=[keyspace.bit_offset(ref.serial)])).decode()
        except RedisError:
            raise Problem(Reason.UNAVAILABLE, _UNAVAILABLE, headers={"Retry-After": "1"}) from None
        if state == "unavailable":
            raise _refusal(state)
        return str(state)


def _refusal(outcome: str) -> Problem:
    if outcome == "voided":
        return Problem(Reason.VOIDED, "This code was voided by its issuer.")
    if outcome == "already_redeemed":
        return Problem(Reason.ALREADY_REDEEMED, "This code has already been redeemed.")
    if outcome == "nonce_reused":
        return Problem(Reason.CONFLICT, "This nonce was already used for another code.")
    return Problem(Reason.UNAVAILABLE, _UNAVAILABLE, headers={"Retry-After": "1"})
