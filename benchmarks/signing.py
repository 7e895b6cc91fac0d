"""Bulk signing: export rows per second against the raw HMAC ceiling, and peak memory.

    python benchmarks/signing.py [--rows 1000000] [--block 50000] [--rounds 3]
                                 [--ed25519-rows 20000] [--ed25519-block 2500]
                                 [--quiet-wait 30] [--no-write]

Measures, each time in a fresh interpreter so that no run inherits another's memory or pool:

* the ceiling: HMAC-SHA256 signatures per second in one Python process, the plain way
  (`keyed.copy()`, `.update(header)`, `.digest()` on an `hmac.new(...)` object), and in two
  such processes at once. A row needs two MACs (code tag and claim tag), so the ceiling is
  half that many rows per second;
* an order of `--rows` HMAC codes exported as csv with `qrloop.codes.bulk.rows_parallel` with 1
  and 2 processes, from the call to the last block written to /dev/null: rows per second,
  the parent's peak RSS (`resource.getrusage`) and the peak RSS of the whole process tree
  (parent, forkserver and pool processes: the sum of each one's VmHWM);
* the same for `--ed25519-rows` Ed25519 codes (not a target: Ed25519 signing dominates).

Rounds alternate the kinds; medians are reported. Before each run the script waits (at most
--quiet-wait seconds) for other processes to use less than 0.1 core, and reports what they
used during the run: the machine is small and shared. Writes the "## Bulk signing" section of
benchmarks/RESULTS.md and leaves every other section as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shlex
import ssl
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]
from results import RESULTS, write_section

from qrloop.codes.bulk import rows_parallel
from qrloop.codes.format import Signer, to_typed
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTION = "## Bulk signing"
CLAIM_BASE = "https://qrloop.example/c/"
CAMPAIGN = 4_000_000_001
FIRST_SERIAL = 1 << 40
TARGET_RATE = 200_000
TARGET_MB = 300
SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class Run:
    """One measurement: a kind of work, how many processes did it, and what it cost."""

    round: int
    kind: str  # "ceiling", "hmac-sha256" or "ed25519"
    processes: int
    items: int
    seconds: float
    first_block: float  # seconds from the call to the first block (0 for the ceiling)
    self_peak_mb: float
    tree_peak_mb: float
    others_cores: float  # CPU used meanwhile by processes outside the measured tree

    @property
    def rate(self) -> float:
        """Signatures (ceiling) or rows per second."""
        return self.items / self.seconds


# --------------------------------------------------------------------------- measuring child


class Watch:
    """While open: peak RSS of this process and its descendants, and the CPU others used.

    A thread lists the tree every 100 ms and reads each process's own peak RSS (VmHWM, exact
    even between samples) and CPU time. The tree's peak is the sum of its processes' peaks:
    an upper bound, since they need not peak at the same moment. CPU used by the machine
    meanwhile, minus the tree's own, is what other processes took from the measurement.
    """

    def __init__(self) -> None:
        self.tree_peak_mb = 0.0
        self.others_cores = 0.0
        self._peaks: dict[int, int] = {}
        self._cpu: dict[int, float] = {}
        self._cpu_before: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._busy = 0.0
        self._started = 0.0

    def __enter__(self) -> Watch:
        self._sample()
        self._cpu_before = dict(self._cpu)
        self._busy = _busy_seconds()
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        elapsed = time.perf_counter() - self._started
        tree_cpu = sum(self._cpu.values()) - sum(self._cpu_before.values())
        self.others_cores = max(0.0, _busy_seconds() - self._busy - tree_cpu) / elapsed
        self.tree_peak_mb = sum(self._peaks.values()) / 2**10

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
                peak_kb = _peak_rss_kb(process.pid)
            except (psutil.Error, OSError):  # ended between listing and reading
                continue
            # A process that ends keeps its last reading.
            self._cpu[process.pid] = times.user + times.system
            self._peaks[process.pid] = peak_kb


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:  # a zombie has no memory left to report
        raise OSError(f"no VmHWM for process {pid}")
    return int(match[1])


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _result(count: int, seconds: float, first_block: float, watch: Watch) -> dict[str, Any]:
    return {
        "items": count,
        "seconds": seconds,
        "first_block": first_block,
        "others": watch.others_cores,
        "tree_mb": watch.tree_peak_mb,
    }


def measure_ceiling(count: int) -> dict[str, Any]:
    """HMAC-SHA256 signatures per second, the plain way, one at a time."""
    key = KeyRing().generate(Purpose.CODE, Algorithm.HMAC_SHA256)
    keyed = hmac.new(key.secret, b"qrloop/code/v1\x00", hashlib.sha256)
    headers = [(FIRST_SERIAL + i).to_bytes(12, "big") for i in range(count)]
    with Watch() as watch:
        started = time.perf_counter()
        for header in headers:
            mac = keyed.copy()
            mac.update(header)
            mac.digest()
        seconds = time.perf_counter() - started
    return _result(count, seconds, 0.0, watch)


def measure_rows(algorithm: Algorithm, processes: int, count: int, block: int) -> dict[str, Any]:
    """An order's csv export from the call to its last byte written to /dev/null."""
    key = KeyRing().generate(Purpose.CODE, algorithm)
    lines = 0
    first = b""
    first_block = 0.0
    with open(os.devnull, "wb") as sink, Watch() as watch:
        started = time.perf_counter()
        for rows in rows_parallel(
            key, CAMPAIGN, FIRST_SERIAL, count, CLAIM_BASE, "csv", processes, block
        ):
            first_block = first_block or time.perf_counter() - started
            sink.write(rows)
            lines += rows.count(b"\n")
            first = first or rows[: rows.index(b"\n") + 1]
        seconds = time.perf_counter() - started
    signer = Signer(key)
    code = signer.sign(CAMPAIGN, FIRST_SERIAL)
    expected = f"{code},{to_typed(code)},{CLAIM_BASE}{signer.claim_token(CAMPAIGN, FIRST_SERIAL)}\n"
    if lines != count or first != expected.encode():
        raise SystemExit(f"wrong output: {lines} lines, first {first!r}")
    return _result(count, seconds, first_block, watch)


def child(argv: list[str]) -> None:
    """Run one measurement and print it as one JSON line."""
    kind, processes, count, block = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    if kind == "ceiling":
        result = measure_ceiling(count)
    else:
        result = measure_rows(Algorithm(kind), processes, count, block)
    result["self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# --------------------------------------------------------------------------- parent


def wait_for_quiet(limit: float) -> None:
    """Wait, at most `limit` seconds, until other processes use less than 0.1 core."""
    deadline = time.monotonic() + limit
    while True:
        busy = _busy_seconds()
        time.sleep(1.0)
        load = _busy_seconds() - busy
        if load < 0.1 or time.monotonic() >= deadline:
            break
        say(f"waiting for the machine to go quiet ({load:.2f} cores busy)")


def run_child(round_: int, kind: str, processes: int, count: int, block: int) -> Run:
    """One measurement in a fresh interpreter; the ceiling on n cores is n of them at once."""
    copies = processes if kind == "ceiling" else 1
    each = 1 if kind == "ceiling" else processes
    command = [sys.executable, __file__, "--child", kind, str(each), str(count), str(block)]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    results = []
    for process in children:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"{shlex.join(command)} failed with status {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    items = sum(r["items"] for r in results)
    rate = sum(r["items"] / r["seconds"] for r in results)
    run = Run(
        round_,
        kind,
        processes,
        items,
        items / rate,
        max(r["first_block"] for r in results),
        max(r["self_mb"] for r in results),
        sum(r["tree_mb"] for r in results),
        # Each copy counts its siblings' CPU as others'.
        max(0.0, min(r["others"] for r in results) - (copies - 1)),
    )
    say(
        f"{kind} x{processes}: {run.rate:,.0f}/s, {run.seconds:.2f} s,"
        f" peak RSS {run.self_peak_mb:.0f} MB (tree {run.tree_peak_mb:.0f} MB),"
        f" others {run.others_cores:.2f} cores"
    )
    return run


def measure_all(args: argparse.Namespace) -> list[Run]:
    """Every kind once per round, alternating, so drifting load hits all kinds alike."""
    plan = [
        ("ceiling", 1, args.ceiling_signatures, 0),
        ("ceiling", 2, args.ceiling_signatures, 0),
        ("hmac-sha256", 1, args.rows, args.block),
        ("hmac-sha256", 2, args.rows, args.block),
        ("ed25519", 1, args.ed25519_rows, args.ed25519_block),
        ("ed25519", 2, args.ed25519_rows, args.ed25519_block),
    ]
    runs = []
    for round_ in range(1, args.rounds + 1):
        say(f"round {round_} of {args.rounds}")
        for kind, processes, count, block in plan:
            wait_for_quiet(args.quiet_wait)
            runs.append(run_child(round_, kind, processes, count, block))
    return runs


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def _out(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def machine() -> list[tuple[str, str]]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _out("lscpu").splitlines()
            if line.startswith("Model name")
        ),
        platform.processor() or "?",
    )
    commit = _out("git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD").strip() or "?"
    dirty = _out("git", "-C", str(ROOT), "status", "--porcelain", "src").strip()
    return [
        ("CPU", f"{model}, {os.cpu_count()} CPUs (nproc {_out('nproc').strip()})"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_version()}, {ssl.OPENSSL_VERSION}"),
        ("qrloop", f"{commit}{' + uncommitted changes in src/' if dirty else ''}"),
    ]


def _median(runs: list[Run], kind: str, processes: int) -> Run:
    """The run with the median rate (upper median for an even count)."""
    chosen = sorted(
        (r for r in runs if r.kind == kind and r.processes == processes), key=lambda r: r.rate
    )
    return chosen[len(chosen) // 2]


def _share(runs: list[Run], kind: str, processes: int) -> float:
    """Median over rounds of rows/s / (ceiling rows/s) measured in the same round."""
    ceilings = {
        r.round: r.rate / 2 for r in runs if r.kind == "ceiling" and r.processes == processes
    }
    return statistics.median(
        r.rate / ceilings[r.round] for r in runs if r.kind == kind and r.processes == processes
    )


def report(args: argparse.Namespace, runs: list[Run], command: str) -> str:
    """The "## Bulk signing" section: machine, method, medians, verdict, every run."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ceilings = {processes: _median(runs, "ceiling", processes).rate for processes in (1, 2)}
    lines = [
        SECTION,
        "",
        f"Run {when} with",
        "",
        "```sh",
        command,
        "```",
        "",
        *[f"- {name}: {value}" for name, value in machine()],
        "",
        f"Each cell is the median of {args.rounds} runs, each in a fresh interpreter. A row is"
        " `code,typed,claim_url`: two HMAC-SHA256 per HMAC row (code tag, claim tag), one"
        " Ed25519 signature and one HMAC per Ed25519 row. Rows are streamed to /dev/null in"
        f" blocks of {args.block:,} ({args.ed25519_block:,} for Ed25519) from the call to"
        ' `qrloop.codes.bulk.rows_parallel(..., "csv", processes)` until its last block, pool'
        " start-up included (*first block*: seconds until the first block arrived). Peak RSS:"
        " the calling process (`getrusage`), and the sum of every process's own peak (VmHWM)"
        " over the whole tree (caller, forkserver, pool processes): an upper bound, shared"
        " pages counted once per process. *Others*: cores used by the rest of the machine"
        " meanwhile. *Share of ceiling*: rows/s / (ceiling signatures/s with as many"
        " processes / 2), computed within each round and its median shown: the host's speed"
        " drifts by tens of percent from minute to minute, invisibly from inside (no steal"
        " time reported), so ratios within a round say more than absolute rates.",
        "",
        f"Ceiling: {ceilings[1]:,.0f} HMAC-SHA256 signatures/s in one Python process"
        " (`keyed.copy()`, `.update(header)`, `.digest()` on an `hmac.new(...)` object), so"
        f" {ceilings[1] / 2:,.0f} two-MAC rows/s; {ceilings[2]:,.0f} signatures/s from two such"
        f" processes at once, so {ceilings[2] / 2:,.0f} rows/s on 2 cores. `bulk` computes the"
        " same MAC from two pre-keyed SHA-256 states without the `hmac.HMAC` wrapper's"
        " Python-level method calls, so a row can cost less than two ceiling signatures.",
        "",
        "| codes | processes | rows | rows/s | share of ceiling | seconds | first block s"
        " | peak RSS caller MB | peak RSS tree MB | others (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("hmac-sha256", "ed25519"):
        for processes in (1, 2):
            run = _median(runs, kind, processes)
            share = _share(runs, kind, processes)
            lines.append(
                f"| {kind} | {processes} | {run.items:,} | {run.rate:,.0f} | {share:.2f}"
                f" | {run.seconds:.2f} | {run.first_block:.2f} | {run.self_peak_mb:.0f}"
                f" | {run.tree_peak_mb:.0f} | {run.others_cores:.2f} |"
            )
    return "\n".join([*lines, "", _verdict(args, runs), "", *_every_run(runs)]) + "\n"


def _verdict(args: argparse.Namespace, runs: list[Run]) -> str:
    """The target: rate from the median run, memory from the worst run."""
    rate = _median(runs, "hmac-sha256", 2).rate
    peak = max(r.tree_peak_mb for r in runs if r.kind == "hmac-sha256" and r.processes == 2)
    rate_ok = "met" if rate >= TARGET_RATE else "MISSED"
    memory_ok = "met" if peak <= TARGET_MB else "MISSED"
    return (
        f"Target, a {args.rows:,}-code order with 2 processes: ≥ {TARGET_RATE:,} codes/s:"
        f" {rate:,.0f} ({rate_ok}); peak memory ≤ {TARGET_MB} MB: {peak:.0f} MB, the whole"
        f" tree in the worst run ({memory_ok})."
    )


def _every_run(runs: list[Run]) -> list[str]:
    return [
        "<details><summary>Every run</summary>",
        "",
        "| round | kind | processes | items | per second | seconds | first block s | caller MB"
        " | tree MB | others |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r.round} | {r.kind} | {r.processes} | {r.items:,} | {r.rate:,.0f}"
            f" | {r.seconds:.2f} | {r.first_block:.2f} | {r.self_peak_mb:.0f}"
            f" | {r.tree_peak_mb:.0f} | {r.others_cores:.2f} |"
            for r in runs
        ],
        "",
        "</details>",
    ]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="HMAC order size")
    parser.add_argument("--ed25519-rows", type=int, default=20_000, help="Ed25519 order size")
    parser.add_argument("--ceiling-signatures", type=int, default=1_000_000)
    parser.add_argument("--block", type=int, default=50_000, help="HMAC rows per block")
    parser.add_argument("--ed25519-block", type=int, default=2_500, help="Ed25519 rows per block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="at most this many seconds before each run waiting for other load to settle",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--child"]:
        child(arguments[1:])
        return
    args = parse(arguments)
    command = shlex.join(["python", "benchmarks/signing.py", *arguments])
    section = report(args, measure_all(args), command)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
        say(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
