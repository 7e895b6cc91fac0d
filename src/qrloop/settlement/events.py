"""Stream entries as written by the Lua scripts, parsed into rows for PostgreSQL."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class VoidRow:
    campaign_id: int
    serial: int
    voided_at: datetime


def _moment(milliseconds: bytes) -> datetime:
    return datetime.fromtimestamp(int(milliseconds) / 1000, tz=UTC)


Row = RedemptionRow | ReversalRow | VoidRow


def parse(entry_id: str, fields: dict[bytes, bytes]) -> Row:
    """The row an entry settles into; PoisonEntry when it is malformed."""
    try:
        kind = fields[b"type"]
        if kind == b"redeem":
            return RedemptionRow(
                campaign_id=int(fields[b"campaign"]),
                serial=int(fields[b"serial"]),
                use_no=int(fields[b"use"]),
                terminal_id=int(fields[b"terminal"]),
                store_id=int(fields[b"store"]),
                merchant_id=int(fields[b"merchant"]),
                redeemed_at=_moment(fields[b"at"]),
                stream_entry=entry_id,
            )
        if kind == b"reverse":
            return ReversalRow(
                campaign_id=int(fields[b"campaign"]),
                serial=int(fields[b"serial"]),
                use_no=int(fields[b"use"]),
                terminal_id=int(fields[b"terminal"]),
                store_id=int(fields[b"store"]),
                reversed_at=_moment(fields[b"at"]),
            )
        if kind == b"void":
            return VoidRow(
                campaign_id=int(fields[b"campaign"]),
                serial=int(fields[b"serial"]),
                voided_at=_moment(fields[b"at"]),
            )
    except (KeyError, ValueError) as error:
        raise PoisonEntry(f"entry {entry_id}: {error!r}") from None
    raise PoisonEntry(f"entry {entry_id}: unknown type {kind!r}")
