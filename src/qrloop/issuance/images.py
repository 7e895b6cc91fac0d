"""Bulk exports of QR images: a ZIP of PNG or SVG files, or printable A4 PDF sheets.

Pure of any web framework: each builder takes the order's codes as an iterable and yields
the file in chunks of about 64 KiB, so memory stays bounded by one chunk, one page or a
few rendering batches, whatever the size of the order. The one thing that grows with the
order is the index a ZIP or PDF must end with, kept in compact arrays: 40 bytes per ZIP
entry, 16 bytes per PDF page.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice
from typing import Literal

from qrloop.codes import render
from qrloop.parallel import process_pool

ImageFormat = Literal["png", "svg"]
MEDIA_TYPES = {"png": "application/zip", "svg": "application/zip", "pdf": "application/pdf"}

CHUNK_BYTES = 1 << 16  # the size of the pieces the builders yield
BATCH = 256  # codes per task handed to a worker process
PNG_SCALE = 4  # pixels per module: 116 px (HMAC) or 148 px (Ed25519) with the quiet zone
SVG_SCALE = 4


# --- rendering, in this process or in a pool ---------------------------------------------


def _svg_file(code: str) -> bytes:
    markup = render.svg_markup(code, SVG_SCALE)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + markup.encode() + b"\n"


def _png_file(code: str) -> bytes:
    return render.png_bytes(code, PNG_SCALE)


_FILE_MAKERS = {"png": _png_file, "svg": _svg_file}


def _files(codes: Sequence[str], fmt: ImageFormat) -> list[bytes]:
    """The image files of a batch of codes; what a worker process runs."""
    return list(map(_FILE_MAKERS[fmt], codes))


def render_pngs(codes: Sequence[str], processes: int = 1) -> list[bytes]:
    """The PNG image of each code, in order, rendered by `processes` processes."""
    return [png for _, png in _rendered(((0, code) for code in codes), "png", processes)]


def _rendered(
    items: Iterable[tuple[int, str]], fmt: ImageFormat, processes: int
) -> Iterator[tuple[int, bytes]]:
    """(serial, image file) for each item, in order."""
    render.learned_layouts()
    if processes <= 1:
        make = _FILE_MAKERS[fmt]
        yield from ((serial, make(code)) for serial, code in items)
    else:
        yield from _rendered_in_pool(items, fmt, processes)


def _rendered_in_pool(
    items: Iterable[tuple[int, str]], fmt: ImageFormat, processes: int
) -> Iterator[tuple[int, bytes]]:
    """Batches go to worker processes; at most two batches per worker are in flight.

    Pool.imap would read the whole input at once; this window keeps memory bounded. The
    workers get the layouts this process learned, so none of them learns them again, and
    they start from a fork server: forking a server process that runs threads is unsafe.
    """
    pending: deque[tuple[list[int], Future[list[bytes]]]] = deque()
    iterator = iter(items)
    with process_pool(processes, render.adopt_layouts, (render.learned_layouts(),)) as pool:
        try:
            while batch := list(islice(iterator, BATCH)):
                serials = [serial for serial, _ in batch]
                pending.append((serials, pool.submit(_files, [code for _, code in batch], fmt)))
                if len(pending) >= 2 * processes:
                    yield from _collect(*pending.popleft())
            while pending:
                yield from _collect(*pending.popleft())
        finally:
            # A client that goes away closes this generator: drop the queued work.
            pool.shutdown(cancel_futures=True)


def _collect(serials: list[int], future: Future[list[bytes]]) -> Iterator[tuple[int, bytes]]:
    yield from zip(serials, future.result(), strict=True)


# --- ZIP ----------------------------------------------------------------------------------

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<IHHHHIIH")
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_STORED, _DEFLATED = 0, 8
_DOS_DATE = (1 << 5) | 1  # 1980-01-01 00:00: a fixed date keeps the export reproducible
_MADE_BY = (3 << 8) | 45  # Unix, ZIP 4.5 (ZIP64)
_FILE_MODE = 0o100644 << 16
_MAX16, _MAX32 = 0xFFFF, 0xFFFFFFFF
# Offsets and sizes from here on need ZIP64 fields (a test lowers it to reach them cheaply).
_ZIP32_LIMIT = _MAX32


def _entry_name(serial: int, extension: str) -> bytes:
    return f"{serial:012d}.{extension}".encode("ascii")


class _ZipWriter:
    """Writes a ZIP forward only: each file's CRC and sizes are known before its header.

    No data descriptors, and ZIP64 only where needed (more than 65,535 entries, offsets
    past 4 GiB), so every unzip tool reads it.
    """

    def __init__(self, extension: str, deflate: bool) -> None:
        self.extension, self.deflate = extension, deflate
        self.offset = 0
        self.serials, self.offsets = array("Q"), array("Q")
        self.crcs, self.sizes, self.stored_sizes = array("L"), array("L"), array("L")

    def add(self, serial: int, data: bytes) -> bytes:
        """The local header and the (compressed) data of one file."""
        crc = zlib.crc32(data)
        payload = _deflate(data) if self.deflate else data
        name = _entry_name(serial, self.extension)
        header = _LOCAL.pack(
            0x04034B50, 20, 0, self._method(), 0, _DOS_DATE, crc, len(payload), len(data),
            len(name), 0,
        )  # fmt: skip
        for column, value in (
            (self.serials, serial), (self.offsets, self.offset), (self.crcs, crc),
            (self.sizes, len(data)), (self.stored_sizes, len(payload)),
        ):  # fmt: skip
            column.append(value)
        self.offset += len(header) + len(name) + len(payload)
        return header + name + payload

    def _method(self) -> int:
        return _DEFLATED if self.deflate else _STORED

    def finish(self) -> Iterator[bytes]:
        """The central directory, in chunks, then the end records."""
        start, chunk = self.offset, bytearray()
        for index in range(len(self.serials)):
            entry = self._central_entry(index)
            chunk += entry
            self.offset += len(entry)
            if len(chunk) >= CHUNK_BYTES:
                yield bytes(chunk)
                chunk.clear()
        chunk += self._end(start, self.offset - start)
        yield bytes(chunk)

    def _central_entry(self, index: int) -> bytes:
        offset = self.offsets[index]
        zip64 = offset >= _ZIP32_LIMIT
        # ZIP64 extra field: tag 1, 8 bytes, the offset the 32-bit field could not hold.
        extra = struct.pack("<HHQ", 1, 8, offset) if zip64 else b""
        name = _entry_name(self.serials[index], self.extension)
        header = _CENTRAL.pack(
            0x02014B50, _MADE_BY, 45 if zip64 else 20, 0, self._method(), 0, _DOS_DATE,
            self.crcs[index], self.stored_sizes[index], self.sizes[index], len(name),
            len(extra), 0, 0, 0, _FILE_MODE, _MAX32 if zip64 else offset,
        )  # fmt: skip
        return header + name + extra

    def _end(self, start: int, size: int) -> bytes:
        count = len(self.serials)
        small_count = count if count < _MAX16 else _MAX16
        small_size = size if size < _ZIP32_LIMIT else _MAX32
        small_start = start if start < _ZIP32_LIMIT else _MAX32
        end = _EOCD.pack(
            0x06054B50, 0, 0, small_count, small_count, small_size, small_start, 0
        )  # fmt: skip
        if (small_count, small_size, small_start) == (count, size, start):
            return end
        record = _EOCD64.pack(0x06064B50, 44, _MADE_BY, 45, 0, 0, count, count, size, start)
        locator = _LOCATOR64.pack(0x07064B50, 0, start + size, 1)
        return record + locator + end


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate, as ZIP stores it
    return compressor.compress(data) + compressor.flush()


def zip_stream(
    items: Iterable[tuple[int, str]], fmt: ImageFormat, *, processes: int = 1
) -> Iterator[bytes]:
    """A ZIP of one image per (serial, code), named by serial: `000000000123.png`.

    PNGs are stored (they are compressed already); SVGs are deflated. With `processes` > 1
    the images are rendered by that many worker processes, in order.
    """
    writer = _ZipWriter(fmt, deflate=fmt == "svg")
    chunk = bytearray()
    for serial, data in _rendered(items, fmt, processes):
        chunk += writer.add(serial, data)
        if len(chunk) >= CHUNK_BYTES:
            yield bytes(chunk)
            chunk.clear()
    if chunk:
        yield bytes(chunk)
    yield from writer.finish()


# --- PDF ----------------------------------------------------------------------------------

_MM = 72 / 25.4
_PAGE_W, _PAGE_H = 595.28, 841.89  # A4 in points
_MARGIN = 10 * _MM
_FOOTER_Y = 5 * _MM
_COLUMNS = 4
_CELL_W = (_PAGE_W - 2 * _MARGIN) / _COLUMNS  # 47.5 mm
_QR_SIDE = 32 * _MM  # quiet zone included: 0.86 mm modules (HMAC), 0.71 mm (Ed25519)
_PAD = 2 * _MM  # from a cut line to the QR image
_TEXT_SIZE = 6.5  # Courier: every glyph is 0.6 em wide
_LEADING = 8.0
_GROUPS_PER_LINE = 5  # 30 characters of Courier 6.5 pt: 41 mm, inside the cell
_MARK = 3 * _MM  # arm of a cut mark
_SMALL = 7.0  # footer, Helvetica

# Objects: 1 catalog, 2 page tree (written last, when its kids are known), 3 and 4 fonts,
# 5 document information, then a content stream and a page object per page.
_CATALOG, _PAGES, _COURIER, _HELVETICA, _INFO, _FIRST_PAGE = 1, 2, 3, 4, 5, 6
_RESOURCES = f"<< /Font << /F1 {_COURIER} 0 R /F2 {_HELVETICA} 0 R >> >>"


@dataclass(frozen=True, slots=True)
class SheetLayout:
    """A grid of cells on an A4 page, sized for typed forms of `lines` lines."""

    lines: int
    rows: int
    cell_h: float

    @property
    def cells(self) -> int:
        return self.rows * _COLUMNS


def sheet_layout(lines: int) -> SheetLayout:
    """As many rows as fit: each cell holds the QR image and `lines` lines of text."""
    needed = 2 * _PAD + _QR_SIDE + lines * _LEADING
    rows = max(1, int((_PAGE_H - 2 * _MARGIN) // needed))
    return SheetLayout(lines, rows, (_PAGE_H - 2 * _MARGIN) / rows)


def typed_lines(typed: str) -> list[str]:
    """The typed form broken after every fifth dash, so that a line fits in a cell."""
    groups = typed.split("-")
    return [
        "-".join(groups[i : i + _GROUPS_PER_LINE])
        + ("-" if i + _GROUPS_PER_LINE < len(groups) else "")
        for i in range(0, len(groups), _GROUPS_PER_LINE)
    ]


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _pdf_text(text: str) -> bytes:
    """A PDF literal string in WinAnsiEncoding; characters outside it become '?'."""
    raw = text.replace("\r", " ").replace("\n", " ").encode("cp1252", "replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _qr_ops(code: str, x: float, top: float) -> str:
    """The symbol's dark runs as filled rectangles, in module units via a flipped matrix.

    One path filled once: rasterisers then draw the union with no seams between rows.
    """
    sym = render.symbol(code)
    scale = _QR_SIDE / sym.size
    runs = "".join(f"{col} {row} {length} 1 re\n" for row, col, length in sym.dark_runs())
    return f"q {_num(scale)} 0 0 {_num(-scale)} {_num(x)} {_num(top)} cm\n{runs}f\nQ\n"


def _cell_ops(item: tuple[int, str, str], layout: SheetLayout, index: int) -> bytes:
    _, code, typed = item
    column, row = index % _COLUMNS, index // _COLUMNS
    left = _MARGIN + column * _CELL_W
    top = _PAGE_H - _MARGIN - row * layout.cell_h
    qr = _qr_ops(code, left + (_CELL_W - _QR_SIDE) / 2, top - _PAD).encode()
    lines = typed_lines(typed)
    width = max(map(len, lines)) * 0.6 * _TEXT_SIZE
    baseline = top - _PAD - _QR_SIDE - _TEXT_SIZE
    text = [
        f"BT /F1 {_num(_TEXT_SIZE)} Tf {_num(_LEADING)} TL "
        f"{_num(left + (_CELL_W - width) / 2)} {_num(baseline)} Td\n".encode()
    ]
    text += [_pdf_text(line) + b" Tj T*\n" for line in lines]
    return qr + b"".join(text) + b"ET\n"


def _cut_marks(layout: SheetLayout) -> bytes:
    """A cross at every corner of every cell, drawn thin and grey, away from the QR images."""
    ops = ["q 0.3 w 0.4 G\n"]
    for column in range(_COLUMNS + 1):
        for row in range(layout.rows + 1):
            x, y = _MARGIN + column * _CELL_W, _PAGE_H - _MARGIN - row * layout.cell_h
            ops.append(
                f"{_num(x - _MARK)} {_num(y)} m {_num(x + _MARK)} {_num(y)} l "
                f"{_num(x)} {_num(y - _MARK)} m {_num(x)} {_num(y + _MARK)} l\n"
            )
    ops.append("S Q\n")
    return "".join(ops).encode()


def _footer(title: str, page: int, items: list[tuple[int, str, str]]) -> bytes:
    serials = f"serials {items[0][0]}\u2013{items[-1][0]}"
    text = f"{title}  \u00b7  {serials}  \u00b7  page {page}"
    return (
        b"BT /F2 %s Tf %s %s Td "
        % (
            _num(_SMALL).encode(),
            _num(_MARGIN).encode(),
            _num(_FOOTER_Y).encode(),
        )
        + _pdf_text(text)
        + b" Tj ET\n"
    )


def page_content(
    items: list[tuple[int, str, str]], layout: SheetLayout, title: str, page: int
) -> bytes:
    """The uncompressed content stream of one sheet."""
    cells = [_cell_ops(item, layout, index) for index, item in enumerate(items)]
    return b"".join([b"0 g\n", *cells, _cut_marks(layout), _footer(title, page, items)])


class _PdfWriter:
    """Writes PDF 1.4 objects forward, remembering only their offsets (8 bytes each).

    Page k (from 0) is a content stream, object `_FIRST_PAGE + 2k`, then its page object.
    """

    def __init__(self) -> None:
        self.offset = 0
        self.offsets = array("Q", [0] * _FIRST_PAGE)  # by object number; 0 is unused
        self.pages = 0

    def raw(self, data: bytes) -> bytes:
        self.offset += len(data)
        return data

    def obj(self, number: int, body: bytes) -> bytes:
        if number == len(self.offsets):
            self.offsets.append(self.offset)
        else:
            self.offsets[number] = self.offset
        return self.raw(b"%d 0 obj\n%s\nendobj\n" % (number, body))

    def header(self, title: str) -> bytes:
        # The comment with bytes above 127 tells transfer tools that the file is binary.
        info = b"<< /Title %s /Producer (qrloop) >>" % _pdf_unicode(title)
        font = b"<< /Type /Font /Subtype /Type1 /BaseFont /%s /Encoding /WinAnsiEncoding >>"
        return b"".join([
            self.raw(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
            self.obj(_CATALOG, b"<< /Type /Catalog /Pages %d 0 R >>" % _PAGES),
            self.obj(_COURIER, font % b"Courier"),
            self.obj(_HELVETICA, font % b"Helvetica"),
            self.obj(_INFO, info),
        ])  # fmt: skip

    def page(self, content: bytes) -> bytes:
        stream_id = _FIRST_PAGE + 2 * self.pages
        self.pages += 1
        data = zlib.compress(content, 6)
        stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(data), data)
        page = (
            f"<< /Type /Page /Parent {_PAGES} 0 R /Resources {_RESOURCES} "
            f"/Contents {stream_id} 0 R >>"
        ).encode()
        return self.obj(stream_id, stream) + self.obj(stream_id + 1, page)

    def finish(self) -> Iterator[bytes]:
        """The page tree, the cross-reference table and the trailer, in chunks."""
        kids = range(_FIRST_PAGE + 1, _FIRST_PAGE + 2 * self.pages, 2)
        tree = b"<< /Type /Pages /Kids [%s] /Count %d /MediaBox [0 0 %s %s] >>" % (
            b" ".join(b"%d 0 R" % kid for kid in kids), self.pages,
            _num(_PAGE_W).encode(), _num(_PAGE_H).encode(),
        )  # fmt: skip
        yield self.obj(_PAGES, tree)
        count = len(self.offsets)
        # Each cross-reference entry is exactly 20 bytes, its end of line " \n".
        yield b"xref\n0 %d\n0000000000 65535 f \n" % count
        for first in range(1, count, CHUNK_BYTES // 20):
            chunk = self.offsets[first : first + CHUNK_BYTES // 20]
            yield b"".join(b"%010d 00000 n \n" % offset for offset in chunk)
        yield b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
            count, _CATALOG, _INFO, self.offset,
        )  # fmt: skip


def _pdf_unicode(text: str) -> bytes:
    """A PDF hex string in UTF-16BE with a byte order mark: any text, for metadata."""
    return b"<%s>" % ("\ufeff" + text).encode("utf-16-be").hex().encode()


def _sheets(
    items: Iterable[tuple[int, str, str]],
) -> Iterator[tuple[SheetLayout, list[tuple[int, str, str]]]]:
    """Items grouped into pages; a code whose typed form needs another layout starts a page."""
    page: list[tuple[int, str, str]] = []
    layout: SheetLayout | None = None
    for item in items:
        wanted = sheet_layout(len(typed_lines(item[2])))
        if page and (wanted != layout or len(page) == wanted.cells):
            assert layout is not None
            yield layout, page
            page = []
        layout = wanted
        page.append(item)
    if page and layout is not None:
        yield layout, page


def pdf_stream(items: Iterable[tuple[int, str, str]], title: str) -> Iterator[bytes]:
    """Printable A4 sheets of (serial, code, typed form): a grid of vector QR codes, the typed
    form under each in Courier, cut marks at the cell corners; one page per chunk yielded."""
    render.learned_layouts()
    writer = _PdfWriter()
    yield writer.header(title)
    for number, (layout, page) in enumerate(_sheets(items), start=1):
        yield writer.page(page_content(page, layout, title, number))
    if not writer.pages:  # a document needs a page; an empty order gets a blank sheet
        yield writer.page(b"")
    yield from writer.finish()
