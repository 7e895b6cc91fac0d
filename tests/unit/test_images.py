"""Bulk image exports: ZIPs of PNG/SVG named by serial, printable PDF sheets; all of it scans."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import segno
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from qrloop.codes import render
from qrloop.codes.format import Signer, parse_input, to_typed
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from qrloop.issuance import images

RING = KeyRing()
SIGNERS = {a: Signer(RING.generate(Purpose.CODE, a)) for a in Algorithm}
SERIALS = [0, 1, 123, 99_999, 2**40 + 7]
QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


def _items(algorithm: Algorithm, serials: list[int]) -> list[tuple[int, str]]:
    return [(serial, SIGNERS[algorithm].sign(48213, serial)) for serial in serials]


def _scan(image: Image.Image) -> list[str]:
    # QR only, as a till's scanner is set up: with every format on, zxing-cpp very rarely
    # (about 1 in 20,000 codes, segno's own masks included) also reads a row of modules as
    # a 1D barcode.
    return [r.text for r in zxingcpp.read_barcodes(image, formats=QR_ONLY)]


def _open_zip(chunks: Iterator[bytes]) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    return archive


# --- the fast symbol is segno's symbol --------------------------------------------------


def _segno_rows(text: str) -> list[str]:
    version, mask = render.FIXED_LAYOUTS[len(text)]
    qr = segno.make_qr(
        text, error="M", version=version, mask=mask, mode="alphanumeric", boost_error=False
    )
    quiet = "0" * (len(qr.matrix) + 2 * render.BORDER)
    rows = ["0000" + "".join(map(str, row)) + "0000" for row in qr.matrix]
    return [quiet] * render.BORDER + rows + [quiet] * render.BORDER


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(render.FIXED_LAYOUTS)).flatmap(
        lambda n: st.text(alphabet=render.ALPHANUMERIC, min_size=n, max_size=n)
    )
)
def test_fast_symbol_equals_segno_module_for_module(text: str) -> None:
    """For any alphanumeric text of 45 or 122 characters, the precomputed layout draws exactly
    the symbol segno makes in alphanumeric mode with the same version and mask."""
    render.learned_layouts()
    assert render.symbol(text).rows() == _segno_rows(text)


def test_make_qr_uses_the_fixed_version_and_mask_for_codes() -> None:
    """make_qr gives codes their fixed version and mask, so every format draws one symbol."""
    for algorithm, length in [(Algorithm.HMAC_SHA256, 45), (Algorithm.ED25519, 122)]:
        qr = render.make_qr(SIGNERS[algorithm].sign(1, 2))
        assert (qr.version, qr.mask) == render.FIXED_LAYOUTS[length]


# --- ZIP of PNG / SVG ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_png_zip_entries_are_named_by_serial_and_scan(algorithm: Algorithm) -> None:
    """Each PNG entry is stored under its zero-padded serial and decodes to exactly its code."""
    items = _items(algorithm, SERIALS)
    archive = _open_zip(images.zip_stream(items, "png"))
    assert archive.namelist() == [f"{serial:012d}.png" for serial in SERIALS]
    assert archive.namelist()[2] == "000000000123.png"
    for (serial, code), info in zip(items, archive.infolist(), strict=True):
        assert info.compress_type == zipfile.ZIP_STORED  # PNG is compressed already
        with Image.open(archive.open(info)) as image:
            assert _scan(image) == [code], serial


def _rasterise_svg(markup: bytes, pixels_per_unit: int = 4) -> Image.Image:
    """Draw the subset of SVG the export uses: a white rect, a path of M/h/v/z commands."""
    root = ET.fromstring(markup)
    ns = "{http://www.w3.org/2000/svg}"
    side = int(root.attrib["viewBox"].split()[2])
    image = Image.new("L", (side * pixels_per_unit,) * 2, 255)
    draw = ImageDraw.Draw(image)
    (path,) = root.iter(ns + "path")
    assert path.attrib["fill"] == "#000"
    for subpath in re.findall(r"M[^M]*", path.attrib["d"]):
        x, y, points = 0, 0, []
        for command, value in re.findall(r"([MhvZz])\s*(-?[\d ]*)", subpath):
            numbers = [int(n) for n in value.split()]
            if command == "M":
                x, y = numbers
            elif command == "h":
                x += numbers[0]
            elif command == "v":
                y += numbers[0]
            points.append((x * pixels_per_unit, y * pixels_per_unit))
        # Pillow includes the right and bottom edges; the module ends one pixel before.
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        draw.rectangle((min(xs), min(ys), max(xs) - 1, max(ys) - 1), fill=0)
    return image


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_svg_zip_entries_are_named_by_serial_and_scan(algorithm: Algorithm) -> None:
    """Each SVG entry is a deflated standalone SVG file that, drawn, decodes to its code."""
    items = _items(algorithm, SERIALS)
    archive = _open_zip(images.zip_stream(items, "svg"))
    assert archive.namelist() == [f"{serial:012d}.svg" for serial in SERIALS]
    for (_, code), info in zip(items, archive.infolist(), strict=True):
        assert info.compress_type == zipfile.ZIP_DEFLATED
        data = archive.read(info)
        assert data.startswith(b"<?xml")
        assert _scan(_rasterise_svg(data)) == [code]


def test_zip_is_streamed_in_bounded_chunks() -> None:
    """The first chunk comes out long before the input ends, and no chunk is much above 64 KiB."""
    consumed = 0

    def endless() -> Iterator[tuple[int, str]]:
        nonlocal consumed
        signer = SIGNERS[Algorithm.HMAC_SHA256]
        while True:
            yield consumed, signer.sign(1, consumed)
            consumed += 1

    chunks = images.zip_stream(endless(), "png")
    sizes = [len(next(chunks)) for _ in range(3)]
    assert consumed < 1_000
    assert all(images.CHUNK_BYTES <= size < images.CHUNK_BYTES + 2_000 for size in sizes)


def test_zip_rendered_by_two_processes_is_identical() -> None:
    """Rendering in a pool of two worker processes yields the same bytes, order kept."""
    items = _items(Algorithm.HMAC_SHA256, list(range(3 * images.BATCH + 5)))
    assert b"".join(images.zip_stream(items, "png", processes=2)) == b"".join(
        images.zip_stream(items, "png")
    )
    assert images.render_pngs([code for _, code in items[:3]], processes=2) == [
        render.png_bytes(code) for _, code in items[:3]
    ]


def _tiny_zip(count: int) -> bytes:
    writer = images._ZipWriter("png", deflate=False)
    parts = [writer.add(serial, serial.to_bytes(3, "big")) for serial in range(count)]
    return b"".join([*parts, *writer.finish()])


def test_zip64_end_records_past_65535_entries(tmp_path: Path) -> None:
    """Past 65,535 entries the archive carries ZIP64 end records and every entry still reads."""
    data = _tiny_zip(70_000)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert len(archive.infolist()) == 70_000
    assert archive.read("000000069999.png") == (69_999).to_bytes(3, "big")
    if shutil.which("unzip"):  # Info-ZIP, an independent reader
        (tmp_path / "t.zip").write_bytes(data)
        assert subprocess.run(["unzip", "-tq", str(tmp_path / "t.zip")]).returncode == 0


def test_zip64_offsets_past_4_gib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Entries and a central directory that start past the 32-bit limit get ZIP64 offsets,
    which readers follow."""
    monkeypatch.setattr(images, "_ZIP32_LIMIT", 100)  # as if the first 100 bytes were 4 GiB
    data = _tiny_zip(50)
    assert b"PK\x06\x06" in data[-100:]  # the ZIP64 end record
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert [archive.read(f"{s:012d}.png") for s in (0, 49)] == [b"\0\0\0", b"\0\0\x31"]
    if shutil.which("unzip"):
        (tmp_path / "t.zip").write_bytes(data)
        assert subprocess.run(["unzip", "-tq", str(tmp_path / "t.zip")]).returncode == 0


def test_empty_zip_is_valid() -> None:
    """An order with no codes gives an empty but valid archive."""
    assert _open_zip(images.zip_stream([], "png")).namelist() == []


# --- PDF sheets ----------------------------------------------------------------------------


def _pdf_items(algorithm: Algorithm, count: int, first: int = 0) -> list[tuple[int, str, str]]:
    return [
        (serial, code, to_typed(code))
        for serial, code in _items(algorithm, list(range(first, first + count)))
    ]


def _objects(pdf: bytes) -> dict[int, bytes]:
    """Every object the cross-reference table lists, checked to start where it says."""
    start = int(pdf.rsplit(b"startxref", 1)[1].split()[0])
    assert pdf[start:].startswith(b"xref\n0 ")
    count = int(pdf[start:].split(b"\n", 2)[1].split()[1])
    table = pdf[start:].split(b"\n", 2)[2]
    objects = {}
    for number in range(1, count):
        offset = int(table[20 * number : 20 * number + 10])
        assert pdf[offset:].startswith(b"%d 0 obj\n" % number), number
        objects[number] = pdf[offset : pdf.index(b"endobj", offset)]
    return objects


def _contents(pdf: bytes) -> list[bytes]:
    streams = []
    for body in _objects(pdf).values():
        if b"/FlateDecode" in body:
            length = int(re.search(rb"/Length (\d+)", body).group(1))  # type: ignore[union-attr]
            data = body[body.index(b"stream\n") + 7 :][:length]
            streams.append(zlib.decompress(data))
    return streams


@pytest.mark.parametrize(
    ("algorithm", "per_page"), [(Algorithm.HMAC_SHA256, 24), (Algorithm.ED25519, 20)]
)
def test_pdf_is_well_formed_with_a_grid_per_page(algorithm: Algorithm, per_page: int) -> None:
    """%PDF header, exact cross-reference offsets, %%EOF; pages of 4 columns, as many rows as
    fit the typed form, cut marks on each page."""
    items = _pdf_items(algorithm, per_page + 3)
    pdf = b"".join(images.pdf_stream(items, "Free cone (22:00)"))
    assert pdf.startswith(b"%PDF-1.4\n")
    assert pdf.endswith(b"%%EOF\n")
    assert b"/Count 2" in pdf
    first, second = _contents(pdf)
    assert first.count(b" cm\n") == per_page and second.count(b" cm\n") == 3
    assert first.count(b" m ") == 2 * 5 * (per_page // 4 + 1)  # a cross at every corner
    assert b"(%s) Tj" % images.typed_lines(items[0][2])[0].encode() in first
    assert b"Free cone \\(22:00\\)" in first


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_typed_lines_fit_and_parse_back(algorithm: Algorithm) -> None:
    """The typed form broken into lines of at most 30 characters still parses to the code."""
    code = SIGNERS[algorithm].sign(9, 10)
    lines = images.typed_lines(to_typed(code))
    assert max(map(len, lines)) <= 30
    assert parse_input("\n".join(lines)) == code


def test_pdf_starts_a_page_when_the_layout_changes() -> None:
    """Codes with longer typed forms start a new page with their own grid."""
    items = _pdf_items(Algorithm.HMAC_SHA256, 2) + _pdf_items(Algorithm.ED25519, 2, first=2)
    pages = _contents(b"".join(images.pdf_stream(items, "mixed")))
    assert [page.count(b" cm\n") for page in pages] == [2, 2]


def test_pdf_is_streamed_page_by_page() -> None:
    """Each page is yielded once its codes are read: the input is never read ahead."""
    consumed = 0

    def endless() -> Iterator[tuple[int, str, str]]:
        nonlocal consumed
        signer = SIGNERS[Algorithm.HMAC_SHA256]
        while True:
            code = signer.sign(1, consumed)
            consumed += 1
            yield consumed, code, to_typed(code)

    chunks = images.pdf_stream(endless(), "endless")
    assert next(chunks).startswith(b"%PDF")
    next(chunks)
    assert consumed == 24 + 1  # one page, and the first code of the next
    next(chunks)
    assert consumed == 48 + 1


def test_empty_pdf_has_one_blank_page() -> None:
    """An order with no codes still gives a valid document: one blank page."""
    pdf = b"".join(images.pdf_stream([], "nothing"))
    assert b"/Count 1" in pdf
    assert _contents(pdf) == [b""]


def test_title_with_any_characters_is_safe() -> None:
    """Parentheses, backslashes, line breaks and non-Latin text cannot break the document."""
    pdf = b"".join(images.pdf_stream(_pdf_items(Algorithm.HMAC_SHA256, 1), "a) \\ (b\n预售"))
    assert b"(a\\) \\\\ \\(b ??  \xb7  serials 0\x960  \xb7  page 1) Tj" in _contents(pdf)[0]
    assert ("\ufeffa) \\ (b\n预售").encode("utf-16-be").hex().encode() in pdf


PDFTOPPM = shutil.which("pdftoppm")


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm (poppler-utils) is not installed")
@pytest.mark.parametrize(
    ("algorithm", "per_page"), [(Algorithm.HMAC_SHA256, 24), (Algorithm.ED25519, 20)]
)
def test_printed_sheet_scans(algorithm: Algorithm, per_page: int, tmp_path: Path) -> None:
    """A page rendered at 150 dpi by poppler shows every code of the page, each decoding
    exactly: what a printer makes of the sheet scans."""
    assert PDFTOPPM is not None
    items = _pdf_items(algorithm, per_page + 1, first=1_000)
    (tmp_path / "sheet.pdf").write_bytes(b"".join(images.pdf_stream(items, "scan test")))
    subprocess.run(
        [PDFTOPPM, "-r", "150", "-f", "1", "-l", "1", "-png", "-singlefile",
         str(tmp_path / "sheet.pdf"), str(tmp_path / "page")],
        check=True,
    )  # fmt: skip
    with Image.open(tmp_path / "page.png") as page:
        assert page.size in {(1240, 1754), (1241, 1754)}  # A4 at 150 dpi, rounded either way
        assert sorted(_scan(page)) == sorted(code for _, code, _ in items[:per_page])
