"""QR rendering of code texts.

Base32 uses only A-Z and 2-7, so segno picks alphanumeric mode. At error level M, observed
with segno 1.6: a 45-character HMAC code is version 3 (29x29 modules), a 122-character
Ed25519 code is version 5 (37x37 modules).
"""

from __future__ import annotations

import io

import segno

BORDER = 4  # the quiet zone ISO/IEC 18004 requires


def make_qr(text: str) -> segno.QRCode:
    """A regular (never Micro) QR code at error level M."""
    # boost_error=False keeps the level, so the version depends on the length alone.
    return segno.make_qr(text, error="M", boost_error=False)


def png_bytes(text: str, scale: int = 4) -> bytes:
    """The QR code as a PNG image."""
    out = io.BytesIO()
    make_qr(text).save(out, kind="png", scale=scale, border=BORDER)
    return out.getvalue()


def svg_markup(text: str, scale: int = 4) -> str:
    """The QR code as an <svg> element to embed in HTML (no XML declaration)."""
    out = io.BytesIO()
    make_qr(text).save(out, kind="svg", scale=scale, border=BORDER, xmldecl=False, nl=False)
    return out.getvalue().decode("utf-8")
