"""Campaign and order rows as they cross modules: typed structs, each with the one column list
that reads it. A query selects `CAMPAIGN_COLUMNS` (or `columns(Campaign, "c")`) first, then
whatever else it needs, and `campaign_of(row)` takes the struct's part of the row."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec


class Campaign(msgspec.Struct, frozen=True):
    id: int
    merchant_id: int
    name: str
    face_value: int
    currency: str
    valid_from: datetime | None
    valid_until: datetime | None
    hours: str | None
    timezone: str
    algorithm: str
    paused: bool
    reversal_window_s: int
    platform_fee: int
    next_serial: int  # serials below it are reserved by orders


class Order(msgspec.Struct, frozen=True):
    """The serial range [first_serial, first_serial + quantity) signed with key_id; the first
    `done` of them are signed, `export_bytes` of its CSV export. Its claim links start with
    `claim_base` (None: placed before migration 017); `export_sha256` is the CSV's digest,
    recorded as the order became done."""

    id: int
    campaign_id: int
    merchant_id: int
    key_id: int
    status: str  # queued, running, done, failed or cancelled
    first_serial: int
    quantity: int
    done: int
    export_bytes: int
    claim_base: str | None
    export_sha256: bytes | None


def columns(struct: type[msgspec.Struct], alias: str = "") -> str:
    """The struct's columns in field order, qualified by `alias` when given."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + name for name in struct.__struct_fields__)


CAMPAIGN_COLUMNS = columns(Campaign)
ORDER_COLUMNS = columns(Order)
_CAMPAIGN_WIDTH = len(Campaign.__struct_fields__)
_ORDER_WIDTH = len(Order.__struct_fields__)


def campaign_of(row: asyncpg.Record) -> Campaign:
    return Campaign(*row[:_CAMPAIGN_WIDTH])


def order_of(row: asyncpg.Record) -> Order:
    return Order(*row[:_ORDER_WIDTH])
