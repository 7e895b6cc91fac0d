"""Stream an order's codes out: the signer's file for csv, derived on demand otherwise."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from enum import StrEnum
from pathlib import Path

import asyncpg

from qrloop.codes.bulk import rows_parallel
from qrloop.codes.format import Signer, to_typed
from qrloop.codes.keyring import KeyEntry, KeyRing, KeyStatus
from qrloop.errors import Problem, Reason
from qrloop.issuance import images

READ_CHUNK = 256 * 1024
JSON_BLOCK = 20_000


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    PNG = "png"
    SVG = "svg"
    PDF = "pdf"


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/x-ndjson",
    ExportFormat.PNG: images.MEDIA_TYPES["png"],
    ExportFormat.SVG: images.MEDIA_TYPES["svg"],
    ExportFormat.PDF: images.MEDIA_TYPES["pdf"],
}
EXTENSIONS = {
    ExportFormat.CSV: "csv",
    ExportFormat.JSON: "jsonl",
    ExportFormat.PNG: "png.zip",
    ExportFormat.SVG: "svg.zip",
    ExportFormat.PDF: "pdf",
}


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
    blocks = rows_parallel(
        key,
        order["campaign_id"],
        order["first_serial"],
        order["total"],
        base_url + "/c/",
        "json",
        1,
        JSON_BLOCK,
    )
    with contextlib.closing(blocks):
        for _ in range(0, order["total"], JSON_BLOCK):
            yield await asyncio.to_thread(next, blocks)


def _codes(key: KeyEntry, order: asyncpg.Record) -> Iterator[tuple[int, str]]:
    first = order["first_serial"]
    codes = Signer(key).sign_range(order["campaign_id"], first, order["total"])
    return enumerate(codes, start=first)


def pictures(
    key: KeyEntry, order: asyncpg.Record, fmt: ExportFormat, title: str
) -> Iterator[bytes]:
    """A ZIP of QR images named by serial, or printable A4 sheets; derived as they stream.

    Sync and CPU-bound: the response runs it step by step off the event loop.
    """
    if fmt is ExportFormat.PDF:
        rows = ((serial, code, to_typed(code)) for serial, code in _codes(key, order))
        return images.pdf_stream(rows, title)
    return images.zip_stream(_codes(key, order), "png" if fmt is ExportFormat.PNG else "svg")
