"""Stream an order's codes out, derived on demand from (campaign, serial, key) in any API
process: no export is stored, so API processes need no filesystem shared with the signers.

Why not keep the CSV (a file, PostgreSQL or object storage): benchmarks/RESULTS.md, "Export
source".
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterator
from enum import StrEnum
from typing import NamedTuple

from qrloop.codes.bulk import CSV_HEADER, csv_row_bytes, rows_parallel
from qrloop.codes.format import Signer, to_typed
from qrloop.codes.keyring import KeyEntry, KeyRing, KeyStatus
from qrloop.errors import Problem, Reason
from qrloop.issuance import images
from qrloop.parallel import lower_priority, process_pool, run_in_pool
from qrloop.rows import Order

ROWS_BLOCK = 20_000  # csv or json rows made at a time
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
_DIGEST_MEANINGS = {
    "ETag": "csv: the export's SHA-256 in hex, recorded as the order was signed",
    "Repr-Digest": "csv: the same SHA-256, as RFC 9530 writes it",
    "Digest": "csv: the same SHA-256, as RFC 3230 wrote it",
}


def digest_headers(digest: bytes) -> dict[str, str]:
    """A CSV export's SHA-256 as a strong ETag, an RFC 9530 Repr-Digest and an RFC 3230
    Digest (which older tools read)."""
    encoded = base64.b64encode(digest).decode()
    return {
        "ETag": f'"{digest.hex()}"',
        "Repr-Digest": f"sha-256=:{encoded}:",
        "Digest": f"sha-256={encoded}",
    }


# Each digest header's meaning and an example, for the API's documentation.
CSV_HEADERS = {
    name: (_DIGEST_MEANINGS[name], value) for name, value in digest_headers(bytes(32)).items()
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


def csv_headers(key: KeyEntry, order: Order, claim_base: str) -> dict[str, str]:
    """The CSV's length (every row of a key's algorithm has one) and, once the signer has
    recorded it, its SHA-256: a merchant can check that a download is complete and that a
    re-download is the same bytes."""
    length = len(CSV_HEADER) + order.quantity * csv_row_bytes(key.algorithm, claim_base)
    digest = order.export_sha256
    return {"Content-Length": str(length)} | (digest_headers(digest) if digest else {})


class Span(NamedTuple):
    """The serials an order holds, as the worker process needs them."""

    campaign_id: int
    first_serial: int
    quantity: int


def span_of(order: Order) -> Span:
    return Span(order.campaign_id, order.first_serial, order.quantity)


def derived(
    key: KeyEntry, span: Span, fmt: ExportFormat, claim_base: str, title: str
) -> AsyncIterator[bytes]:
    """CSV or JSON lines, images or sheets derived again from (campaign, serial, key).

    Signing (Ed25519 holds the GIL), QR rendering and PDF layout are CPU-bound Python: in a
    thread they would starve the event loop that answers the tills, so they run in a worker
    process of their own and only the finished chunks come back."""
    if fmt is ExportFormat.CSV:
        return in_worker_process(_csv, key, span, claim_base)
    if fmt is ExportFormat.JSON:
        return in_worker_process(_json_lines, key, span, claim_base)
    return in_worker_process(_pictures, key, span, fmt, title)


def _csv(key: KeyEntry, span: Span, claim_base: str) -> Iterator[bytes]:
    """The header line, then `code,typed,claim_url` rows: the bytes the signer hashed."""
    yield CSV_HEADER
    yield from rows_parallel(key, *span, claim_base, "csv", 1, ROWS_BLOCK)


def _json_lines(key: KeyEntry, span: Span, claim_base: str) -> Iterator[bytes]:
    return rows_parallel(key, *span, claim_base, "json", 1, ROWS_BLOCK)


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
