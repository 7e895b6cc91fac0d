"""The code state in Redis: one Lua call to consume, to peek or to reverse. Fails closed.

Answers are outcomes (outcomes.py); decide.py says what they mean to the till."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from redis.exceptions import RedisError

from qrloop import keyspace, lua
from qrloop.accounts.tokens import TerminalClaims
from qrloop.codes.format import CodeRef
from qrloop.redemption import outcomes
from qrloop.redemption.outcomes import Outcome, Refused, Use
from qrloop.redemption.pipe import Pipe, Script


def _script(name: str, keys: tuple[str, ...]) -> Script:
    return Script(lua.source(__package__, name, keys))


_REDEEM = _script("redeem.lua", keyspace.RedeemKeys._fields)
_CHECK = _script("check.lua", keyspace.CheckKeys._fields)
_REVERSE = _script("reverse.lua", keyspace.ReverseKeys._fields)

# The scripts' refusals; any other answer is one the store should not give: fail closed.
_REFUSALS = {
    b"voided": outcomes.VOIDED,
    b"already_redeemed": outcomes.ALREADY_REDEEMED,
    b"not_found": outcomes.NO_REDEMPTION,
    b"other_store": outcomes.NO_REDEMPTION,  # another store's is not this till's to see
    b"window_closed": outcomes.WINDOW_CLOSED,
    b"unavailable": outcomes.UNAVAILABLE,
}


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
    ) -> Consumed | Refused:
        """Consume the code and return the redemption id (the first one again for a retried
        scan: a till's retry is answered as it was the first time, marked reversed if it was
        reversed since), or why not."""
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
        if answer is None:
            return outcomes.UNAVAILABLE
        outcome = answer[0]
        if outcome in (b"redeemed", b"replay", b"reversed"):
            return Consumed(answer[1].decode(), reversed=outcome == b"reversed")
        if outcome == b"already_redeemed" and answer[1] is not None:
            return Refused(Outcome.ALREADY_REDEEMED, use=_last_use(answer[1]))
        return _refused(outcome)

    async def peek(self, ref: CodeRef) -> Refused | None:
        """Why a redeem would be refused now (VOIDED, ALREADY_REDEEMED, UNAVAILABLE), or None."""
        partition = keyspace.partition_of(ref.campaign_id, ref.serial, self._partitions)
        keys = keyspace.check_keys(partition, ref.campaign_id, ref.serial)
        state = await self._run(_CHECK, keys, [keyspace.bit_offset(ref.serial)])
        return None if state == b"valid" else _refused(state)

    async def reverse(
        self, redemption: RedemptionId, terminal: TerminalClaims, now_ms: int, window_ms: int
    ) -> Refused | None:
        """Free the code again (None), or why not."""
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
        return None if outcome == b"reversed" else _refused(outcome)

    async def _run(
        self, script: Script, keys: Sequence[str], args: list[str | int], pipe: Pipe | None = None
    ) -> Any:
        """The script's answer, or None when Redis cannot give one."""
        try:
            return await (pipe or self._pipe).evalsha(script, keys, args)
        except RedisError:
            return None


def _refused(answer: Any) -> Refused:
    """The refusal a script answered (None: Redis gave no answer)."""
    return _REFUSALS.get(answer, outcomes.UNAVAILABLE)


def _last_use(last_use: bytes) -> Use:
    """The code's last use as Redis keeps it: "use|terminal|store|at ms|reversed|nonce"."""
    _, _, store, at_ms, *_ = last_use.split(b"|")
    return Use(int(store), datetime.fromtimestamp(int(at_ms) / 1000, tz=UTC))
