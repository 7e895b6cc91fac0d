"""Stream entries as written by the Lua scripts, parsed into rows for PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


class PoisonEntry(ValueError):
    """An entry no retry can settle: it goes to the dead-letter stream."""


@dataclass(frozen=True, slots=True)
class RedemptionRow:
    campaign_id: int
    serial: int
    use_no: int
    terminal_id: int
    store_id: int
    merchant_id: int
    redeemed_at: datetime
    stream_entry: str


@dataclass(frozen=True, slots=True)
class ReversalRow:
    campaign_id: int
    serial: int
    use_no: int
    terminal_id: int
    store_id: int
    reversed_at: datetime
    # The time of the redemption reversed: its row's partition key. None in entries written
    # before migration 013; the worker then reads it from the redemption's row.
    redeemed_at: datetime | None


@dataclass(frozen=True, slots=True)
class VoidRow:
    campaign_id: int
    first_serial: int
    last_serial: int
    voided_at: datetime


def _moment(milliseconds: bytes) -> datetime:
    return datetime.fromtimestamp(int(milliseconds) / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class ClaimRow:
    campaign_id: int
    serial: int
    consumer_hash: str
    claimed_at: datetime


Row = RedemptionRow | ReversalRow | VoidRow | ClaimRow


def parse(entry_id: str, fields: dict[bytes, bytes]) -> Row:
    """The row an entry settles into; PoisonEntry when it is malformed.

    An entry is one field, named by its kind, whose value packs the columns with "|"
    (see the Lua scripts that write them).
    """
    try:
        ((kind, packed),) = fields.items()
        return _ROW[kind](entry_id, packed.split(b"|"))
    except (KeyError, ValueError, TypeError) as error:
        raise PoisonEntry(f"entry {entry_id}: {error!r}") from None


def _redemption(entry_id: str, values: list[bytes]) -> RedemptionRow:
    campaign, serial, use, terminal, store, merchant, at = values
    return RedemptionRow(
        campaign_id=int(campaign),
        serial=int(serial),
        use_no=int(use),
        terminal_id=int(terminal),
        store_id=int(store),
        merchant_id=int(merchant),
        redeemed_at=_moment(at),
        stream_entry=entry_id,
    )


def _reversal(_: str, values: list[bytes]) -> ReversalRow:
    campaign, serial, use, terminal, store, at, *redeemed = values
    if len(redeemed) > 1:
        raise ValueError(f"{len(values)} fields in a reversal")
    return ReversalRow(
        campaign_id=int(campaign),
        serial=int(serial),
        use_no=int(use),
        terminal_id=int(terminal),
        store_id=int(store),
        reversed_at=_moment(at),
        redeemed_at=_moment(redeemed[0]) if redeemed else None,
    )


def _claim(_: str, values: list[bytes]) -> ClaimRow:
    campaign, serial, consumer, at = values
    return ClaimRow(
        campaign_id=int(campaign),
        serial=int(serial),
        consumer_hash=consumer.decode(),
        claimed_at=_moment(at),
    )


def _void(_: str, values: list[bytes]) -> VoidRow:
    campaign, first, last, at = values
    return VoidRow(
        campaign_id=int(campaign),
        first_serial=int(first),
        last_serial=int(last),
        voided_at=_moment(at),
    )


_ROW: dict[bytes, Callable[[str, list[bytes]], Row]] = {
    b"redeem": _redemption,
    b"reverse": _reversal,
    b"claim": _claim,
    b"void": _void,
}
