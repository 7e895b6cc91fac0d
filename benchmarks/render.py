"""QR image export throughput: scannable PNGs per second, 1 and 2 processes, vs segno.

    python benchmarks/render.py [--seconds 3] [--rounds 3] [--codes 60000] [--decode 1000]
                                [--no-write]

For both code kinds (HMAC: 45 characters, QR version 3; Ed25519: 122 characters, version 5)
it signs a set of real codes (not timed), then measures in one run:

  baseline   segno's default path, what `png_bytes` did before: `segno.make_qr` (mask
             search) and segno's PNG writer
  fixed      segno with the version and mask fixed, segno's PNG writer (for reference)
  1 process  `qrloop.codes.render.png_bytes`: the learned layout and qrloop's PNG writer
  2 process  `qrloop.issuance.images.render_pngs(codes, processes=2)`, pool start included
  ZIP        `zip_stream(items, "png", processes=1 | 2)` end to end, bytes consumed

and proves scannability: every PNG of a sample from the 2-process run is decoded with
zxing-cpp and must give back exactly its code (also at 2 pixels per module). It also shows
why the fixed mask is the one it is (mean ISO/IEC 18004 penalty per mask over random codes)
and what each zlib level costs. The "## QR image export" section of benchmarks/RESULTS.md
is replaced with the numbers; every other section is kept.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import segno
import segno.encoder
import zxingcpp
from PIL import Image
from results import RESULTS, write_section

from qrloop.codes import render
from qrloop.codes.format import Signer
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from qrloop.issuance import images

HERE = Path(__file__).resolve().parent
SECTION = "## QR image export"
TARGET = 2_000  # scannable PNGs per second on 2 cores (the target)
KINDS = {Algorithm.HMAC_SHA256: "HMAC (45 chars, v3)", Algorithm.ED25519: "Ed25519 (122 chars, v5)"}


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def segno_default_png(code: str) -> bytes:
    """What `png_bytes` did before: segno's mask search and segno's writer."""
    out = io.BytesIO()
    segno.make_qr(code, error="M", boost_error=False).save(out, kind="png", scale=4, border=4)
    return out.getvalue()


def segno_fixed_png(code: str) -> bytes:
    """segno with the version and mask qrloop fixes, still segno's writer."""
    version, mask = render.FIXED_LAYOUTS[len(code)]
    out = io.BytesIO()
    qr = segno.make_qr(code, error="M", version=version, mask=mask, boost_error=False)
    qr.save(out, kind="png", scale=4, border=4)
    return out.getvalue()


def rate_for(seconds: float, codes: Sequence[str], function: Callable[[str], bytes]) -> float:
    """Codes per second, calling `function` over `codes` (cycling) for about `seconds`."""
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for code in codes[done % len(codes) : done % len(codes) + 200]:
            function(code)
            done += 1
    return done / elapsed


def rate_of(count: int, run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def median_of(rounds: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(rounds))


def scans(png: bytes, code: str) -> tuple[bool, int]:
    """(the image holds exactly one QR code and it decodes to `code`, how many other
    symbols zxing-cpp also reports with every format enabled: 1D misreads of a row)."""
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    qr = [r.text for r in results if r.format == zxingcpp.BarcodeFormat.QRCode]
    return qr == [code], len(results) - len(qr)


def decode_sample(pngs: Sequence[bytes], codes: Sequence[str]) -> tuple[int, int, int]:
    """(decoded exactly, tried, extra non-QR reads) over a sample."""
    outcomes = [scans(png, code) for png, code in zip(pngs, codes, strict=True)]
    return sum(ok for ok, _ in outcomes), len(outcomes), sum(extra for _, extra in outcomes)


# segno's own scorer (internal API, untyped): the sum of the four ISO penalty rules.
_EVALUATE_MASK: Callable[[Any, int, int], int] = segno.encoder.evaluate_mask


def mask_penalties(codes: Sequence[str]) -> list[tuple[float, int]]:
    """(mean, max) ISO/IEC 18004 penalty of each mask over `codes`, by segno's scorer.

    Scored on the finished symbol (format information included), which is what a reader
    sees; segno scores before adding it, so its numbers differ slightly.
    """
    version = render.FIXED_LAYOUTS[len(codes[0])][0]
    out = []
    for mask in range(8):
        scores = []
        for code in codes:
            qr = segno.make_qr(code, error="M", version=version, mask=mask, boost_error=False)
            width = len(qr.matrix)
            scores.append(_EVALUATE_MASK(qr.matrix, width, width))
        out.append((statistics.fmean(scores), max(scores)))
    return out


def zlib_levels(codes: Sequence[str], seconds: float) -> list[tuple[int, float, float]]:
    """(level, mean PNG bytes, PNGs/s) for a few zlib levels."""
    chosen, rows = render.PNG_LEVEL, []
    try:
        for level in (1, 6, 9):
            render.PNG_LEVEL = level
            size = statistics.fmean(len(render.png_bytes(code)) for code in codes[:500])
            rows.append((level, size, rate_for(seconds, codes, render.png_bytes)))
    finally:
        render.PNG_LEVEL = chosen
    return rows


def machine() -> list[tuple[str, str]]:
    def out(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, check=False).stdout
        except OSError:
            return ""

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in out("lscpu").splitlines()
            if line.startswith("Model name")
        ),
        platform.processor() or "?",
    )
    commit = out("git", "-C", str(HERE.parent), "rev-parse", "--short=12", "HEAD").strip()
    dirty = out("git", "-C", str(HERE.parent), "status", "--porcelain", "src").strip()
    return [
        ("CPU", f"{model} (lscpu), nproc {out('nproc').strip() or os.cpu_count()}"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("segno / zxing-cpp", f"{package_version('segno')} / {package_version('zxing-cpp')}"),
        ("qrloop", f"{commit or '?'}{' + uncommitted changes in src/' if dirty else ''}"),
    ]


@dataclass
class Kind:
    """Every number for one kind of code."""

    name: str
    baseline: float = 0.0  # PNGs/s, segno's default path
    fixed: float = 0.0  # segno with version and mask fixed
    one: float = 0.0  # qrloop, 1 process
    two: float = 0.0  # qrloop, 2 processes
    zip_rates: dict[int, float] = field(default_factory=dict)  # processes -> PNGs/s
    decoded: tuple[int, int, int] = (0, 0, 0)  # (exact, tried, non-QR reads), 4 px/module
    decoded_small: tuple[int, int, int] = (0, 0, 0)  # at 2 px per module
    decoded_segno: tuple[int, int, int] = (0, 0, 0)  # segno's default path, 4 px/module
    identical: bool = False  # 2-process PNGs byte-identical to 1-process ones
    png_bytes: float = 0.0
    segno_bytes: float = 0.0
    masks: list[tuple[float, int]] = field(default_factory=list)
    segno_picks: list[int] = field(default_factory=list)
    zlib: list[tuple[int, float, float]] = field(default_factory=list)


def measure_kind(algorithm: Algorithm, args: argparse.Namespace) -> Kind:
    signer = Signer(KeyRing().generate(Purpose.CODE, algorithm))
    codes = [signer.sign(7, serial) for serial in range(args.codes)]
    kind = Kind(KINDS[algorithm])
    seconds, rounds = args.seconds, args.rounds
    say(f"{kind.name}: segno default path (baseline), segno fixed")
    kind.baseline = median_of(rounds, lambda: rate_for(seconds, codes, segno_default_png))
    kind.fixed = median_of(rounds, lambda: rate_for(seconds, codes, segno_fixed_png))
    say(f"{kind.name}: qrloop, 1 process")
    kind.one = median_of(rounds, lambda: rate_for(seconds, codes, render.png_bytes))
    say(f"{kind.name}: qrloop, 2 processes ({len(codes):,} codes a round)")
    pngs: list[bytes] = []

    def two() -> float:
        nonlocal pngs
        started = time.perf_counter()
        pngs = images.render_pngs(codes, processes=2)
        return len(codes) / (time.perf_counter() - started)

    kind.two = median_of(rounds, two)
    say(f"{kind.name}: ZIP streams")
    items = list(enumerate(codes))
    for processes in (1, 2):

        def whole_zip(p: int = processes) -> object:
            return sum(map(len, images.zip_stream(items, "png", processes=p)))

        kind.zip_rates[processes] = median_of(rounds, lambda: rate_of(len(items), whole_zip))
    say(f"{kind.name}: decoding {args.decode} PNGs of the 2-process run with zxing-cpp")
    sample = range(0, len(codes), max(1, len(codes) // args.decode))
    kind.decoded = decode_sample([pngs[i] for i in sample], [codes[i] for i in sample])
    small = sample[: max(1, len(sample) // 5)]
    kind.decoded_small = decode_sample(
        [render.png_bytes(codes[i], scale=2) for i in small], [codes[i] for i in small]
    )
    say(f"{kind.name}: decoding {len(small)} PNGs of segno's default path")
    kind.decoded_segno = decode_sample(
        [segno_default_png(codes[i]) for i in small], [codes[i] for i in small]
    )
    kind.identical = all(pngs[i] == render.png_bytes(codes[i]) for i in sample)
    kind.png_bytes = statistics.fmean(len(pngs[i]) for i in sample)
    kind.segno_bytes = statistics.fmean(len(segno_default_png(codes[i])) for i in small)
    say(f"{kind.name}: mask penalties over {args.masks} codes, zlib levels")
    kind.masks = mask_penalties(codes[: args.masks])
    kind.segno_picks = [
        segno.make_qr(code, error="M", boost_error=False).mask for code in codes[: args.masks]
    ]
    kind.zlib = zlib_levels(codes, seconds / 2)
    return kind


def pool_start_seconds() -> float:
    """Wall time of a 2-process render of one code: pool start and layout hand-over."""
    started = time.perf_counter()
    images.render_pngs(["A" * 45], processes=2)
    return time.perf_counter() - started


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _header(args: argparse.Namespace) -> list[str]:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "benchmarks/render.py", *map(shlex.quote, sys.argv[1:])])
    return [
        SECTION,
        "",
        f"Run {when} with",
        "",
        "```sh",
        command,
        "```",
        "",
        *(f"- {key}: {value}" for key, value in machine()),
        f"- {args.seconds:g} s per timed loop, median of {args.rounds} rounds. The 2-process and"
        f" ZIP columns render {args.codes:,} distinct signed codes a round, pool start included."
        " PNGs: 4 px per module, 4-module quiet zone, 1-bit grayscale.",
        "",
    ]


def _throughput(kinds: list[Kind]) -> list[str]:
    lines = [
        "PNGs per second:",
        "",
        "| codes | segno default (baseline) | segno, fixed version + mask | qrloop, 1 process"
        " | qrloop, 2 processes | ZIP stream, 1 process | ZIP stream, 2 processes"
        " | 2 processes / baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in kinds:
        lines.append(
            f"| {k.name} | {_n(k.baseline)} | {_n(k.fixed)} | {_n(k.one)} | {_n(k.two)}"
            f" | {_n(k.zip_rates[1])} | {_n(k.zip_rates[2])} | {k.two / k.baseline:.0f}x |"
        )
    lines += ["", f"Target ≥ {TARGET:,} scannable PNGs/s on 2 cores:", ""]
    for k in kinds:
        ok, tried, _ = k.decoded
        verdict = "met" if k.two >= TARGET and ok == tried else "MISSED"
        lines.append(f"- {k.name}: {_n(k.two)} PNGs/s, {ok}/{tried} decoded exactly: {verdict}")
    return [*lines, ""]


def _decoded(outcome: tuple[int, int, int]) -> str:
    ok, tried, extra = outcome
    return f"{ok}/{tried} decode to exactly their code ({extra} extra 1D misreads)"


def _scannability(kinds: list[Kind], learn: float, pool: float) -> list[str]:
    lines = [
        f"Scannability (zxing-cpp {package_version('zxing-cpp')}, every format enabled; a PNG"
        " passes when it holds exactly one QR code and that decodes to exactly its code; extra"
        " 1D misreads are zxing-cpp reading a row of modules as, e.g., ITF, and are counted"
        " apart, since a till's scanner reads QR codes only):",
        "",
    ]
    for k in kinds:
        lines.append(
            f"- {k.name}: {_decoded(k.decoded)} of the 2-process run; at 2 px per module"
            f" {_decoded(k.decoded_small)}; segno's default path {_decoded(k.decoded_segno)}."
            f" 2-process PNGs byte-identical to 1-process ones: {'yes' if k.identical else 'NO'};"
            f" mean size {_n(k.png_bytes)} B (segno's writer: {_n(k.segno_bytes)} B)"
        )
    return [
        *lines,
        "",
        f"One-off costs: learning both layouts from segno, {learn:.2f} s of CPU once per process"
        f" (worker processes receive them instead); starting a 2-process pool and rendering one"
        f" code, {pool:.2f} s.",
        "",
    ]


def _masks(kinds: list[Kind], count: int) -> list[str]:
    fixed = ", ".join(
        f"mask {mask} for version {version}" for version, mask in render.FIXED_LAYOUTS.values()
    )
    lines = [
        f"Mask choice: ISO/IEC 18004 penalty score (lower is better) of each mask over {count}"
        f" codes, mean / max, and how often segno's search picks each mask. qrloop fixes {fixed}.",
        "",
        "| codes | "
        + " | ".join(f"mask {m}" for m in range(8))
        + " | segno's picks (mask: times) |",
        "|---|" + "---:|" * 8 + "---|",
    ]
    for k in kinds:
        picks = ", ".join(f"{m}: {k.segno_picks.count(m)}" for m in range(8) if m in k.segno_picks)
        cells = " | ".join(f"{mean:.0f} / {top}" for mean, top in k.masks)
        lines.append(f"| {k.name} | {cells} | {picks} |")
    return [*lines, ""]


def _zlib(kinds: list[Kind]) -> list[str]:
    levels = [level for level, _, _ in kinds[0].zlib]
    lines = [
        f"zlib level of the PNG writer (qrloop uses {render.PNG_LEVEL}): mean PNG size, PNGs/s"
        " on 1 process:",
        "",
        "| codes | " + " | ".join(f"level {level}" for level in levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for k in kinds:
        cells = " | ".join(f"{size:.0f} B, {_n(rate)}/s" for _, size, rate in k.zlib)
        lines.append(f"| {k.name} | {cells} |")
    return lines


def report(args: argparse.Namespace, kinds: list[Kind], learn: float, pool: float) -> str:
    parts = [
        _header(args),
        _throughput(kinds),
        _scannability(kinds, learn, pool),
        _masks(kinds, args.masks),
        _zlib(kinds),
    ]
    return "\n".join(line for part in parts for line in part) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per timed loop")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--codes", type=int, default=60_000, help="codes per kind")
    parser.add_argument("--decode", type=int, default=2_000, help="PNGs decoded per kind")
    parser.add_argument("--masks", type=int, default=200, help="codes scored per mask")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    render.learned_layouts()
    learn = time.perf_counter() - started
    pool = pool_start_seconds()
    kinds = [measure_kind(algorithm, args) for algorithm in KINDS]
    section = report(args, kinds, learn, pool)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
        say(f"wrote {RESULTS}")


if __name__ == "__main__":  # the worker processes import this module without running it
    main()
