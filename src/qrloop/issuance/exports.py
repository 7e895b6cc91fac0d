"""Stream an order's codes out again: derived on demand, memory bounded by one batch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from enum import StrEnum

import asyncpg
import msgspec

from qrloop.codes.format import Signer, to_typed
from qrloop.codes.keyring import KeyRing, KeyStatus
from qrloop.errors import Problem, Reason

BATCH = 2_000


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/x-ndjson",
}


def signer_for(keyring: KeyRing, key_id: int) -> Signer:
    key = keyring.get(key_id)
    if key is None or key.status in (KeyStatus.REVOKED, KeyStatus.RETIRED):
        raise Problem(
            Reason.CONFLICT,
            "This order's signing key is no longer in service; its codes do not verify.",
        )
    return Signer(key)


def _rows(signer: Signer, order: asyncpg.Record, claim_base: str) -> Iterator[tuple[str, str, str]]:
    campaign_id, first = order["campaign_id"], order["first_serial"]
    serial = first
    for code in signer.sign_range(campaign_id, first, order["total"]):
        yield code, to_typed(code), claim_base + signer.claim_token(campaign_id, serial)
        serial += 1


async def stream(
    signer: Signer, order: asyncpg.Record, fmt: ExportFormat, base_url: str
) -> AsyncIterator[bytes]:
    """Lines of the export in batches; the event loop gets a turn between batches."""
    if fmt is ExportFormat.CSV:
        yield b"code,typed,claim_url\n"
    batch: list[str] = []
    for code, typed, claim_url in _rows(signer, order, base_url + "/c/"):
        if fmt is ExportFormat.CSV:
            batch.append(f"{code},{typed},{claim_url}\n")
        else:
            line = {"code": code, "typed": typed, "claim_url": claim_url}
            batch.append(msgspec.json.encode(line).decode() + "\n")
        if len(batch) == BATCH:
            yield "".join(batch).encode()
            batch.clear()
    if batch:
        yield "".join(batch).encode()
