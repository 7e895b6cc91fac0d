"""The code state in Redis: one Lua call to consume, to peek or to reverse. Fails closed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from redis.exceptions import RedisError

from qrloop import keyspace, lua
from qrloop.accounts.tokens import TerminalClaims
from qrloop.codes.format import CodeRef
from qrloop.errors import Problem, Reason
from qrloop.redemption.pipe import Pipe, Script

_UNAVAILABLE = "The code state store cannot answer; no code is accepted until it can."


def _script(name: str, keys: tuple[str, ...]) -> Script:
    return Script(lua.source(__package__, name, keys))


_REDEEM = _script("redeem.lua", keyspace.RedeemKeys._fields)
_CHECK = _script("check.lua", keyspace.CheckKeys._fields)
_REVERSE = _script("reverse.lua", keyspace.ReverseKeys._fields)


def unavailable() -> Problem:
    return Problem(Reason.UNAVAILABLE, _UNAVAILABLE, headers={"Retry-After": "1"})


@dataclass(frozen=True, slots=True)
class RedemptionId:
    """`<campaign>-<serial>-<use>`: the code's n-th use, which is also its settled row's key."""

    campaign_id: int
    serial: int
    use_no: int

    def __str__(self) -> str:
        return f"{self.campaign_id}-{self.serial}-{self.use_no}"

    @classmethod
    def parse(cls, text: str) -> RedemptionId | None:
        parts = text.split("-")
        if len(parts) != 3 or not all(part.isdigit() and len(part) <= 15 for part in parts):
            return None
        return cls(int(parts[0]), int(parts[1]), int(parts[2]))


class Consumed(NamedTuple):
    """A redemption id, and whether it was reversed (only ever so for a till's retry)."""

    redemption_id: str
    reversed: bool


class CodeStateStore:
    """Atomic check-and-consume of a code's bit, with the redemption queued in the same step."""

    def __init__(self, pipe: Pipe, partitions: int, writes: Pipe | None = None) -> None:
        """`writes` consumes and reverses (a pipe that confirms each write, with
        QRLOOP_REDIS_DURABILITY=replicated); `pipe` reads."""
        self._pipe = pipe
        self._writes = writes or pipe
        self._partitions = partitions

    async def consume(
        self, ref: CodeRef, nonce: str, terminal: TerminalClaims, now_ms: int
    ) -> Consumed:
        """Consume the code and return the redemption id (the first one again for a retried
        scan: a till's retry is answered as it was the first time, marked reversed if it was
        reversed since), or raise the Problem that says why not."""
        campaign_id, serial = ref.campaign_id, ref.serial
        partition = keyspace.partition_of(campaign_id, serial, self._partitions)
        keys = keyspace.redeem_keys(partition, campaign_id, serial)
        args: list[str | int] = [
            keyspace.bit_offset(serial),
            campaign_id,
            serial,
            terminal.terminal_id,
            terminal.store_id,
            terminal.merchant_id,
            now_ms,
            nonce,
            keyspace.LAST_USE_TTL_SECONDS,
        ]
        answer = await self._run(_REDEEM, keys, args, self._writes)
        outcome = answer[0]
        if outcome in (b"redeemed", b"replay", b"reversed"):
            return Consumed(answer[1].decode(), reversed=outcome == b"reversed")
        if outcome == b"already_redeemed":
            raise already_redeemed(answer[1])
        raise _refusal(outcome)

    async def peek(self, ref: CodeRef) -> bytes:
        """b'valid', b'voided' or b'already_redeemed'; raises Problem(unavailable)."""
        partition = keyspace.partition_of(ref.campaign_id, ref.serial, self._partitions)
        keys = keyspace.check_keys(partition, ref.campaign_id, ref.serial)
        state: bytes = await self._run(_CHECK, keys, [keyspace.bit_offset(ref.serial)])
        if state == b"unavailable":
            raise unavailable()
        return state

    async def reverse(
        self, redemption: RedemptionId, terminal: TerminalClaims, now_ms: int, window_ms: int
    ) -> None:
        """Free the code again, or raise the Problem that says why not."""
        campaign_id, serial = redemption.campaign_id, redemption.serial
        partition = keyspace.partition_of(campaign_id, serial, self._partitions)
        keys = keyspace.reverse_keys(partition, campaign_id, serial)
        args: list[str | int] = [
            keyspace.bit_offset(serial),
            campaign_id,
            serial,
            redemption.use_no,
            terminal.store_id,
            terminal.terminal_id,
            now_ms,
            window_ms,
        ]
        outcome = await self._run(_REVERSE, keys, args, self._writes)
        if outcome == b"reversed":
            return
        if outcome in (b"not_found", b"other_store"):
            # Another store's redemption is not this till's to see: the same answer as none.
            raise Problem(Reason.NOT_FOUND, f"No reversible redemption {redemption} at this store.")
        if outcome == b"window_closed":
            raise Problem(Reason.CONFLICT, "The reversal window for this redemption has closed.")
        raise _refusal(outcome)

    async def _run(
        self, script: Script, keys: Sequence[str], args: list[str | int], pipe: Pipe | None = None
    ) -> Any:
        try:
            return await (pipe or self._pipe).evalsha(script, keys, args)
        except RedisError:
            raise unavailable() from None


def already_redeemed(last_use: bytes | None = None) -> Problem:
    """The refusal for a used code, saying when and where while Redis still remembers
    (`last_use` is "use|terminal|store|at ms|reversed|nonce")."""
    problem = Problem(Reason.ALREADY_REDEEMED, "This code has already been redeemed.")
    if last_use is not None:
        _, _, store, at_ms, *_ = last_use.split(b"|")
        used_at = datetime.fromtimestamp(int(at_ms) / 1000, tz=UTC).isoformat()
        problem.extra.update(redeemed_at=used_at, store_id=int(store))
        problem.detail += f" It was used at store {int(store)} at {used_at}."
    return problem


def _refusal(outcome: object) -> Problem:
    if outcome == b"voided":
        return Problem(Reason.VOIDED, "This code was voided by its issuer.")
    return unavailable()
