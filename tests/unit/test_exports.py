"""Derived exports are produced in a worker process and streamed back whole and in order."""

from __future__ import annotations

from qrloop.codes.bulk import CSV_HEADER, csv_rows, jsonl_rows
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from qrloop.issuance.exports import ExportFormat, Span, derived


async def test_json_lines_from_the_worker_equal_the_rows_made_in_place() -> None:
    """Several worker batches of Ed25519 JSON lines arrive complete and in serial order."""
    key = KeyRing().generate(Purpose.CODE, Algorithm.ED25519)
    span = Span(campaign_id=3, first_serial=100, quantity=30_000)
    stream = derived(key, span, ExportFormat.JSON, "https://q.example/c/", "title")
    streamed = b"".join([chunk async for chunk in stream])
    assert streamed == jsonl_rows(key, 3, 100, 30_000, "https://q.example/c/")


async def test_csv_from_the_worker_is_the_header_and_the_rows_made_in_place() -> None:
    """A CSV export derived on demand is the header line, then every serial's row in order,
    across several worker batches: the bytes the signer hashed."""
    key = KeyRing().generate(Purpose.CODE, Algorithm.HMAC_SHA256)
    span = Span(campaign_id=5, first_serial=7, quantity=45_000)
    stream = derived(key, span, ExportFormat.CSV, "https://q.example/c/", "")
    streamed = b"".join([chunk async for chunk in stream])
    assert streamed == CSV_HEADER + csv_rows(key, 5, 7, 45_000, "https://q.example/c/")


async def test_a_client_that_goes_away_stops_the_stream() -> None:
    """Closing a large picture export after its first chunk returns at once, without
    rendering the rest."""
    key = KeyRing().generate(Purpose.CODE, Algorithm.HMAC_SHA256)
    span = Span(campaign_id=3, first_serial=0, quantity=10_000_000)
    stream = derived(key, span, ExportFormat.PDF, "https://q.example", "title")
    first = await anext(stream)
    await stream.aclose()
    assert first.startswith(b"%PDF-1.4")
