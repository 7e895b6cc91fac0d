"""Bodies of the till-pairing routes and of the frame endpoint's 'nothing found' answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from qrloop.pagination import Page, schema_name


class PairingOut(msgspec.Struct):
    """A one-time pairing link for a terminal: open `url` on the phone (or scan `qr_svg`, the
    same URL as a QR) before `expires_at`. `token` is shown this once; only its digest is
    kept."""

    token: str
    url: str
    expires_at: datetime
    qr_svg: str

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "token": "qrl_pair_Vb7Qm2kR9sLx4pNw0tEy8uHa1cJf6gD3oKi5nTrMeZw",
        "url": "https://qrloop.example/till/pair/qrl_pair_Vb7Qm2kR9sLx4pNw0tEy8uHa1cJf6gD3oKi5nTrMeZw",
        "expires_at": "2026-12-02T10:10:00Z",
        "qr_svg": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 45 45">…</svg>',
    }


class DeviceOut(msgspec.Struct):
    """A phone paired with a terminal: never its credential. `label` is the browser it was
    paired from."""

    id: int
    terminal_id: int
    label: str
    paired_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 7,
        "terminal_id": 1,
        "label": "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/131.0 Mobile Safari/537.36",
        "paired_at": "2026-12-02T10:01:12.204Z",
        "last_used_at": "2026-12-02T10:14:40.910Z",
        "revoked_at": None,
    }


DevicePage = Annotated[Page[DeviceOut], schema_name("DevicePage")]


class NoCodeFound(msgspec.Struct):
    """A frame in which no QR code was found: nothing was redeemed; send the next frame."""

    status: Literal["no_code"]

    EXAMPLE: ClassVar[dict[str, Any]] = {"status": "no_code"}
