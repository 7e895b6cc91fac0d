"""Stream an order's codes out: the signer's file for csv, derived on demand otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from qrloop.codes.bulk import rows_parallel
from qrloop.codes.format import Signer, to_typed
from qrloop.codes.keyring import KeyEntry, KeyRing, KeyStatus
from qrloop.errors import Problem, Reason
from qrloop.issuance import images
from qrloop.parallel import lower_priority, process_pool, run_in_pool
from qrloop.rows import Order

READ_CHUNK = 256 * 1024
JSON_BLOCK = 20_000
BATCH_BYTES = 1 << 20  # what a worker process hands back at a time


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
# One code of an export in each text format, for the API's documentation.
_CODE, _TYPED, _LINK = (
    "AEAQAAAAAEAAAAAAAAAKAATF6E2DN4RKYJH2DBPVFPO7G",
    "AEAQA-AAAAE-AAAAA-AAAAK-AATF6-E2DN4-RKYJH-2DBPV-FPO7G-2",
    "http://127.0.0.1:8000/c/AEAQAAAAAEAAAAAAAAAIWKT3KZD5IEKHA325SH7D54B4W",
)
TEXT_EXAMPLES = {
    ExportFormat.CSV: f"code,typed,claim_url\n{_CODE},{_TYPED},{_LINK}\n",
    ExportFormat.JSON: f'{{"code":"{_CODE}","typed":"{_TYPED}","claim_url":"{_LINK}"}}\n',
}
EXTENSIONS = {
    ExportFormat.CSV: "csv",
    ExportFormat.JSON: "jsonl",
    ExportFormat.PNG: "png.zip",
    ExportFormat.SVG: "svg.zip",
    ExportFormat.PDF: "pdf",
}


def ready(order: Order) -> None:
    """Refuse an export until the signer has finished the order."""
    if order.status != "done":
        raise Problem(
            Reason.CONFLICT,
            f"Order {order.id} is {order.status} ({order.done:,} of"
            f" {order.quantity:,} codes signed); its codes can be exported once it is done.",
            order_status=order.status,
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


class Span(NamedTuple):
    """The serials an order holds, as the worker process needs them."""

    campaign_id: int
    first_serial: int
    quantity: int


def span_of(order: Order) -> Span:
    return Span(order.campaign_id, order.first_serial, order.quantity)


def derived(
    key: KeyEntry, span: Span, fmt: ExportFormat, base_url: str, title: str
) -> AsyncIterator[bytes]:
    """JSON lines, images or sheets derived again from (campaign, serial, key).

    Signing (Ed25519 holds the GIL), QR rendering and PDF layout are CPU-bound Python: in a
    thread they would starve the event loop that answers the tills, so they run in a worker
    process of their own and only the finished chunks come back."""
    if fmt is ExportFormat.JSON:
        return in_worker_process(_json_lines, key, span, base_url)
    return in_worker_process(_pictures, key, span, fmt, title)


def _json_lines(key: KeyEntry, span: Span, base_url: str) -> Iterator[bytes]:
    claim_base = base_url + "/c/"
    return rows_parallel(key, *span, claim_base, "json", 1, JSON_BLOCK)


def _codes(key: KeyEntry, span: Span) -> Iterator[tuple[int, str]]:
    codes = Signer(key).sign_range(span.campaign_id, span.first_serial, span.quantity)
    return enumerate(codes, start=span.first_serial)


def _pictures(key: KeyEntry, span: Span, fmt: ExportFormat, title: str) -> Iterator[bytes]:
    """A ZIP of QR images named by serial, or printable A4 sheets."""
    if fmt is ExportFormat.PDF:
        rows = ((serial, code, to_typed(code)) for serial, code in _codes(key, span))
        return images.pdf_stream(rows, title)
    return images.zip_stream(_codes(key, span), "png" if fmt is ExportFormat.PNG else "svg")


async def in_worker_process(
    make: Callable[..., Iterator[bytes]], *args: object
) -> AsyncIterator[bytes]:
    """The chunks of `make(*args)`, produced in a worker process one batch ahead of the
    client; a client that goes away stops the worker."""
    pool = process_pool(1, _start_stream, (make, args))
    ahead = asyncio.ensure_future(run_in_pool(pool, _next_batch))
    try:
        while batch := await ahead:
            ahead = asyncio.ensure_future(run_in_pool(pool, _next_batch))
            for chunk in batch:
                yield chunk
    finally:
        ahead.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


_stream: Iterator[bytes] = iter(())


def _start_stream(make: Callable[..., Iterator[bytes]], args: tuple[object, ...]) -> None:
    global _stream  # one stream per worker process, made before its first batch
    lower_priority()
    _stream = make(*args)


def _next_batch() -> list[bytes]:
    """The stream's next chunks, about BATCH_BYTES of them; empty at its end."""
    batch: list[bytes] = []
    size = 0
    for chunk in _stream:
        batch.append(chunk)
        size += len(chunk)
        if size >= BATCH_BYTES:
            break
    return batch
