"""fsync latency of the disk the embedded stores write to: alone, and while the whole system runs.

    python benchmarks/fsync_latency.py [--seconds 15]

A till's answer waits for Valkey's AOF fsync (appendfsync always), so the tail of the answers
can be no shorter than the tail of an fsync on that disk while PostgreSQL writes its WAL and
pages beside it. This probe appends 120 bytes and fsyncs, every 2 ms, in a folder on the same
filesystem as the benchmarks' temporary data: first alone for --seconds, then while
`benchmarks/redeem.py --whole --rounds 1 --connections 8 --no-write` runs. Writes the
"## fsync latency" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import describe
from results import write_section

HERE = Path(__file__).resolve().parent
SECTION = "## fsync latency"


def probe(folder: str, stop: threading.Event) -> list[float]:
    """Milliseconds of each write+fsync until `stop` is set."""
    path = Path(tempfile.mkdtemp(dir=folder)) / "probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    took = []
    try:
        while not stop.is_set():
            started = time.perf_counter()
            os.write(fd, b"x" * 120)
            os.fsync(fd)
            took.append((time.perf_counter() - started) * 1000)
            time.sleep(0.002)
    finally:
        os.close(fd)
        path.unlink()
    return sorted(took)


def row(label: str, took: list[float]) -> str:
    def at(share: float) -> float:
        return took[int(share * (len(took) - 1))]

    over = [sum(t > limit for t in took) for limit in (5, 50)]
    return (
        f"| {label} | {len(took):,} | {at(0.5):.2f} | {at(0.99):.2f} | {at(0.999):.2f}"
        f" | {took[-1]:.1f} | {over[0]} | {over[1]} |"
    )


def measure(folder: str, during: list[str] | None, seconds: float) -> list[float]:
    stop = threading.Event()
    result: list[float] = []
    thread = threading.Thread(target=lambda: result.extend(probe(folder, stop)))
    thread.start()
    if during is None:
        time.sleep(seconds)
    else:
        subprocess.run(during, cwd=HERE, check=True, stdout=subprocess.DEVNULL)
    stop.set()
    thread.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="the probe alone (15)")
    args = parser.parse_args()
    folder = tempfile.gettempdir()
    whole = [sys.executable, "redeem.py", "--whole", "--rounds", "1", "--connections", "8"]
    whole.append("--no-write")
    alone = measure(folder, None, args.seconds)
    beside = measure(folder, whole, args.seconds)
    lines = [
        SECTION,
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python benchmarks/fsync_latency.py`;"
        f" the probe writes in {folder} (the filesystem of the stores' temporary data).",
        "",
        *describe(),
        "",
        "Every 2 ms: append 120 bytes and fsync, as Valkey's AOF does for each answered write.",
        "",
        "| probe | fsyncs | p50 ms | p99 ms | p99.9 ms | max ms | over 5 ms | over 50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row(f"alone, {args.seconds:g} s", alone),
        row("while `redeem.py --whole` runs at 8 connections", beside),
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    write_section(SECTION, section)


if __name__ == "__main__":
    main()
