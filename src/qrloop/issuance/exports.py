"""Stream an order's codes out: the signer's file for csv, derived on demand otherwise."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from enum import StrEnum
from pathlib import Path

import asyncpg

from qrloop.codes.bulk import rows_parallel
from qrloop.codes.keyring import KeyEntry, KeyRing, KeyStatus
from qrloop.errors import Problem, Reason

READ_CHUNK = 256 * 1024
JSON_BLOCK = 20_000


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/x-ndjson",
}
EXTENSIONS = {ExportFormat.CSV: "csv", ExportFormat.JSON: "jsonl"}


def ready(order: asyncpg.Record) -> None:
    """Refuse an export until the signer has finished the order."""
    if order["status"] != "done":
        raise Problem(
            Reason.CONFLICT,
            f"Order {order['id']} is {order['status']} ({order['done']:,} of"
            f" {order['total']:,} codes signed); its codes can be exported once it is done.",
            order_status=order["status"],
        )


def key_for(keyring: KeyRing, key_id: int) -> KeyEntry:
    key = keyring.get(key_id)
    if key is None or key.status in (KeyStatus.REVOKED, KeyStatus.RETIRED):
        raise Problem(
            Reason.CONFLICT,
            "This order's signing key is no longer in service; its codes do not verify.",
        )
    return key


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """The signer's export file, read in bounded chunks off the event loop."""
    file = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
            yield chunk
    finally:
        file.close()


async def derived_json(key: KeyEntry, order: asyncpg.Record, base_url: str) -> AsyncIterator[bytes]:
    """JSON lines derived again from (campaign, serial, key), one block at a time."""
    blocks: Iterator[bytes] = rows_parallel(
        key,
        order["campaign_id"],
        order["first_serial"],
        order["total"],
        base_url + "/c/",
        "json",
        1,
        JSON_BLOCK,
    )
    with contextlib.closing(blocks):  # type: ignore[type-var]
        for _ in range(0, order["total"], JSON_BLOCK):
            yield await asyncio.to_thread(next, blocks)
