"""Stream entries as written by the Lua scripts, parsed into rows for PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime


class PoisonEntry(ValueError):
    """An entry no retry can settle: it goes to the dead-letter stream."""


@dataclass(frozen=True, slots=True)
class RedemptionRow:
    id: uuid.UUID
    campaign_id: int
    serial: int
    terminal_id: int
    store_id: int
    merchant_id: int
    redeemed_at: datetime
    stream_entry: str


@dataclass(frozen=True, slots=True)
class VoidRow:
    campaign_id: int
    serial: int
    voided_at: datetime


def _moment(milliseconds: bytes) -> datetime:
    return datetime.fromtimestamp(int(milliseconds) / 1000, tz=UTC)


def parse(entry_id: str, fields: dict[bytes, bytes]) -> RedemptionRow | VoidRow:
    """The row an entry settles into; PoisonEntry when it is malformed."""
    try:
        kind = fields[b"type"]
        if kind == b"redeem":
            return RedemptionRow(
                id=uuid.UUID(fields[b"id"].decode()),
                campaign_id=int(fields[b"campaign"]),
                serial=int(fields[b"serial"]),
                terminal_id=int(fields[b"terminal"]),
                store_id=int(fields[b"store"]),
                merchant_id=int(fields[b"merchant"]),
                redeemed_at=_moment(fields[b"at"]),
                stream_entry=entry_id,
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
