"""QR rendering of code texts: PNG, SVG and the module grid for vector output.

Base32 uses only A-Z and 2-7, so segno picks alphanumeric mode. At error level M a
45-character HMAC code is version 3 (29x29 modules) and a 122-character Ed25519 code is
version 5 (37x37 modules); every alphanumeric text of those two lengths fits them.

Fast path. For those two layouts the version and the data mask are fixed, so the finished
symbol is an affine function over GF(2) of the bits of the data stream: mode and length
header, padding, format information and the mask are constants, and Reed-Solomon coding
and module placement are linear. `_Layout` learns that function from segno itself (one
segno symbol per data bit, once per process, on request: `learned_layouts`) and then builds
any symbol with a few dozen XORs of Python integers; segno's mask search, skipped, is most
of its cost, and qrloop's own PNG writer replaces segno's. Any mask
decodes; the fixed one is the mask with the lowest mean ISO/IEC 18004 penalty over random
codes (see benchmarks/RESULTS.md, "QR image export"). Other texts go through segno with its
own mask search. Either way every format (PNG, SVG, PDF modules) draws the same symbol.

Pure: no I/O.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from functools import cache

import segno

BORDER = 4  # the quiet zone ISO/IEC 18004 requires
ERROR = "M"
# QR alphanumeric mode: each character's value is its index here.
ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
# text length -> (QR version, data mask); see the module docstring for the mask choice.
FIXED_LAYOUTS = {45: (3, 3), 122: (5, 3)}

_VALUES = bytes(
    ALPHANUMERIC.index(chr(byte)) if chr(byte) in ALPHANUMERIC else 0xFF for byte in range(256)
)
_PAIR_BITS, _LAST_BITS = 11, 6  # two characters share 11 bits; a lone last one takes 6
_LOW_BITS = 5  # each pair's 11 bits are looked up as a 6-bit high and a 5-bit low part
_DARK_RUN = re.compile("1+")
_ZERO_ONE = bytes.maketrans(b"\x00\x01", b"01")


@dataclass(frozen=True, slots=True)
class Symbol:
    """A finished QR symbol with its quiet zone.

    `bits` holds `size` rows of `stride` bits each, first row in the most significant bits,
    leftmost module first within a row, 1 = dark. `stride` is `size` rounded up to a whole
    byte, so a row starts on a byte boundary; the padding bits are 0.
    """

    version: int
    size: int
    stride: int
    bits: int

    def rows(self) -> list[str]:
        """Each row as a string of '0' (light) and '1' (dark), `size` characters long."""
        text = format(self.bits, f"0{self.size * self.stride}b")
        return [text[i : i + self.size] for i in range(0, len(text), self.stride)]

    def dark_runs(self) -> list[tuple[int, int, int]]:
        """(row, first column, length) of each horizontal run of dark modules."""
        return [
            (row, run.start(), run.end() - run.start())
            for row, line in enumerate(self.rows())
            for run in _DARK_RUN.finditer(line)
        ]


def _geometry(version: int) -> tuple[int, int]:
    size = 17 + 4 * version + 2 * BORDER
    return size, -(-size // 8) * 8


def _symbol_from_segno(qr: segno.QRCode) -> Symbol:
    """Repack segno's matrix (a tuple of bytearrays of 0/1) into a `Symbol`."""
    version = qr.version
    if not isinstance(version, int):  # "M1".."M4": segno never makes Micro QR here
        raise TypeError("Micro QR symbols are not rendered")
    size, stride = _geometry(version)
    width = len(qr.matrix)
    row_shift = stride - BORDER - width  # leaves the left quiet zone above the row's bits
    bits = 0
    for row in qr.matrix:
        bits = (bits << stride) | (int(bytes(row).translate(_ZERO_ONE), 2) << row_shift)
    # The last row of modules is followed by the bottom quiet zone, BORDER empty rows.
    return Symbol(version, size, stride, bits << (BORDER * stride))


def _segno_qr(text: str, version: int | None = None, mask: int | None = None) -> segno.QRCode:
    # boost_error=False keeps the level, so the version depends on the length alone.
    mode = "alphanumeric" if version is not None else None
    return segno.make_qr(
        text, error=ERROR, version=version, mask=mask, mode=mode, boost_error=False
    )


class _Layout:
    """The affine map from a fixed-length alphanumeric text to its finished symbol."""

    def __init__(self, length: int, version: int, mask: int) -> None:
        self.length, self.version, self.mask = length, version, mask
        self.pairs = length // 2
        self.last: tuple[int, ...] = ()
        zeros = self._symbol([0] * self._groups()).bits
        self.constant = zeros
        self.high: list[tuple[int, ...]] = []
        self.low: list[tuple[int, ...]] = []
        for group, width in enumerate(self._widths()):
            columns = [self._symbol(self._one_hot(group, bit)).bits ^ zeros for bit in range(width)]
            if width == _PAIR_BITS:
                self.high.append(_xor_table(columns[_LOW_BITS:]))
                self.low.append(_xor_table(columns[:_LOW_BITS]))
            else:
                self.last = _xor_table(columns)

    def _groups(self) -> int:
        return self.pairs + self.length % 2

    def _widths(self) -> list[int]:
        return [_PAIR_BITS] * self.pairs + [_LAST_BITS] * (self.length % 2)

    def _one_hot(self, group: int, bit: int) -> list[int]:
        values = [0] * self._groups()
        values[group] = 1 << bit
        return values

    def _symbol(self, values: list[int]) -> Symbol:
        """segno's symbol for the text whose groups carry these values."""
        chars: list[str] = []
        for group, value in enumerate(values):
            if group < self.pairs:
                chars += (ALPHANUMERIC[value // 45], ALPHANUMERIC[value % 45])
            else:
                chars.append(ALPHANUMERIC[value])
        return _symbol_from_segno(_segno_qr("".join(chars), self.version, self.mask))

    def encode(self, values: bytes) -> int:
        """The symbol's bits for a text given as alphanumeric values (one byte each)."""
        bits = self.constant
        high, low = self.high, self.low
        for pair in range(self.pairs):
            value = 45 * values[2 * pair] + values[2 * pair + 1]
            bits ^= high[pair][value >> _LOW_BITS] ^ low[pair][value & 31]
        if self.length % 2:
            bits ^= self.last[values[-1]]
        return bits


def _xor_table(columns: list[int]) -> tuple[int, ...]:
    """Entry x is the XOR of the columns whose bit is set in x."""
    table = [0]
    for column in columns:
        table += [entry ^ column for entry in table]
    return tuple(table)


_LEARNED: dict[int, _Layout] = {}


def learned_layouts() -> list[_Layout]:
    """Both fixed layouts, learned now if need be: about a second of CPU, once per process.

    Bulk renderers call this first. The layouts pickle to about 2 MB: hand them to
    `adopt_layouts` in a worker process rather than have every worker learn them again.
    """
    for length, (version, mask) in FIXED_LAYOUTS.items():
        # Two threads may both learn a layout; they get the same answer.
        if length not in _LEARNED:
            _LEARNED[length] = _Layout(length, version, mask)
    return [_LEARNED[length] for length in FIXED_LAYOUTS]


def adopt_layouts(layouts: list[_Layout]) -> None:
    """Use layouts learned by another process (see `learned_layouts`)."""
    for layout in layouts:
        if FIXED_LAYOUTS.get(layout.length) != (layout.version, layout.mask):
            raise ValueError("layout learned for another version or mask")
        _LEARNED[layout.length] = layout


def _fixed_values(text: str) -> bytes | None:
    """The alphanumeric values of a text that takes the fast path, else None."""
    if len(text) not in FIXED_LAYOUTS or not text.isascii():
        return None
    values = text.encode("ascii").translate(_VALUES)
    return values if max(values) < len(ALPHANUMERIC) else None


def make_qr(text: str) -> segno.QRCode:
    """A regular (never Micro) QR code at error level M; codes get their fixed version and mask."""
    if _fixed_values(text) is None:
        return _segno_qr(text)
    return _segno_qr(text, *FIXED_LAYOUTS[len(text)])


def symbol(text: str) -> Symbol:
    """The finished symbol of `text`, quiet zone included (the same one `make_qr` draws).

    Once `learned_layouts` has run in this process, codes take the fast path; before, they
    cost one segno encoding (about a millisecond), which is right for a single claim page.
    """
    values = _fixed_values(text)
    if values is None:
        return _symbol_from_segno(_segno_qr(text))
    layout = _LEARNED.get(len(text))
    if layout is None:
        return _symbol_from_segno(_segno_qr(text, *FIXED_LAYOUTS[len(text)]))
    size, stride = _geometry(layout.version)
    return Symbol(layout.version, size, stride, layout.encode(values))


@dataclass(frozen=True, slots=True)
class _PngFrame:
    """What every PNG of one geometry and scale shares."""

    head: bytes  # signature and IHDR
    expand: list[bytes]  # a byte of 8 modules -> its `scale` bytes of pixels
    expanded_stride: int  # bytes of pixels per row of modules, padding included
    row_bytes: int  # bytes per scanline, as PNG counts them
    repeat: bytes  # the scanlines that repeat a row: filter "Up", all differences zero
    tail: bytes  # IEND


@cache
def _png_frame(size: int, stride: int, scale: int) -> _PngFrame:
    side = size * scale
    row_bytes = -(-side // 8)
    # Each module becomes `scale` pixels, inverted: in 1-bit grayscale 0 is black.
    expand = [
        int("".join(("0" if byte >> (7 - i) & 1 else "1") * scale for i in range(8)), 2).to_bytes(
            scale, "big"
        )
        for byte in range(256)
    ]
    return _PngFrame(
        head=b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)),
        expand=expand,
        expanded_stride=stride * scale // 8,
        row_bytes=row_bytes,
        repeat=(b"\x02" + bytes(row_bytes)) * (scale - 1),
        tail=_chunk(b"IEND", b""),
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


# zlib's default level: files as small as segno's writer makes them, and still several
# times the throughput needed on one core; level 1 is about 40% faster but 20% larger
# (benchmarks/render.py measures both).
PNG_LEVEL = 6


def symbol_png(sym: Symbol, scale: int = 4) -> bytes:
    """The symbol as a 1-bit grayscale PNG, `scale` pixels per module."""
    frame = _png_frame(sym.size, sym.stride, scale)
    modules = sym.bits.to_bytes(sym.size * sym.stride // 8, "big")
    pixels = b"".join(map(frame.expand.__getitem__, modules))
    step, width, repeat = frame.expanded_stride, frame.row_bytes, frame.repeat
    # Per row of modules: one scanline with filter None, then `scale - 1` that say "same as
    # the line above" (filter Up, zero differences): cheaper for zlib than literal copies.
    lines = [
        b"\x00" + pixels[start : start + width] + repeat for start in range(0, len(pixels), step)
    ]
    idat = zlib.compress(b"".join(lines), PNG_LEVEL)
    return frame.head + _chunk(b"IDAT", idat) + frame.tail


def png_bytes(text: str, scale: int = 4) -> bytes:
    """The QR code as a PNG image."""
    return symbol_png(symbol(text), scale)


def symbol_svg(sym: Symbol, scale: int = 4) -> str:
    """The symbol as an <svg> element: one filled path, each dark run a rectangle."""
    side = sym.size * scale
    path = "".join(f"M{x} {y}h{n}v1h-{n}z" for y, x, n in sym.dark_runs())
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side}" height="{side}" '
        f'viewBox="0 0 {sym.size} {sym.size}" shape-rendering="crispEdges" class="segno">'
        f'<rect width="{sym.size}" height="{sym.size}" fill="#fff"/>'
        f'<path fill="#000" d="{path}"/></svg>'
    )


def svg_markup(text: str, scale: int = 4) -> str:
    """The QR code as an <svg> element to embed in HTML (no XML declaration)."""
    return symbol_svg(symbol(text), scale)
