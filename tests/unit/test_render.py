"""QR rendering: scannable PNGs, embeddable SVG, stable versions."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from PIL import Image

from qrloop.codes.format import MAX_CAMPAIGN, MAX_SERIAL, Signer, to_typed
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from qrloop.codes.render import make_qr, png_bytes, svg_markup

RING = KeyRing()
SIGNERS = {a: Signer(RING.generate(Purpose.CODE, a)) for a in Algorithm}
CASES = [
    (algorithm, campaign, serial)
    for algorithm in Algorithm
    for campaign, serial in [(0, 0), (1, 2), (MAX_CAMPAIGN, MAX_SERIAL), (48213, 99_000_123)]
]


def _scan(png: bytes) -> list[str]:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert all(r.format == zxingcpp.BarcodeFormat.QRCode for r in results)
    return [r.text for r in results]


@pytest.mark.parametrize(("algorithm", "campaign", "serial"), CASES)
def test_png_scans_back_to_the_code(algorithm: Algorithm, campaign: int, serial: int) -> None:
    """A rendered PNG decodes with zxing-cpp to exactly the code text, for both variants."""
    code = SIGNERS[algorithm].sign(campaign, serial)
    assert _scan(png_bytes(code)) == [code]


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_png_scans_at_other_scales(scale: int) -> None:
    """Small and large scales still scan."""
    code = SIGNERS[Algorithm.ED25519].sign(5, 6)
    assert _scan(png_bytes(code, scale=scale)) == [code]


def test_png_has_quiet_zone() -> None:
    """The PNG is (modules + 2 * 4 border) * scale pixels wide."""
    code = SIGNERS[Algorithm.HMAC_SHA256].sign(1, 1)
    with Image.open(io.BytesIO(png_bytes(code, scale=3))) as image:
        assert image.size == ((29 + 8) * 3, (29 + 8) * 3)


@pytest.mark.parametrize(
    ("algorithm", "version"), [(Algorithm.HMAC_SHA256, 3), (Algorithm.ED25519, 5)]
)
def test_qr_version_is_stable(algorithm: Algorithm, version: int) -> None:
    """Codes render as regular QR, alphanumeric mode, level M: version 3 (HMAC) or 5 (Ed25519)."""
    for campaign, serial in [(0, 0), (MAX_CAMPAIGN, MAX_SERIAL)]:
        qr = make_qr(SIGNERS[algorithm].sign(campaign, serial))
        assert (qr.version, qr.error, qr.mode, qr.is_micro) == (version, "M", "alphanumeric", False)


def test_short_text_is_never_micro_qr() -> None:
    """Even text that would fit a Micro QR renders as a regular QR code."""
    assert make_qr("A").is_micro is False


def test_typed_form_renders_too() -> None:
    """The typed form (dashes included) is alphanumeric and scans back unchanged."""
    typed = to_typed(SIGNERS[Algorithm.HMAC_SHA256].sign(7, 8))
    assert make_qr(typed).mode == "alphanumeric"
    assert _scan(png_bytes(typed)) == [typed]


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_svg_is_embeddable_xml(algorithm: Algorithm) -> None:
    """The SVG is well-formed XML with an <svg> root and no XML declaration."""
    markup = svg_markup(SIGNERS[algorithm].sign(3, 4), scale=2)
    assert markup.startswith("<svg")
    root = ET.fromstring(markup)
    assert root.tag in {"svg", "{http://www.w3.org/2000/svg}svg"}
