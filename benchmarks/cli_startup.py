"""How long `qrloop --help` and `qrloop --version` take, from exec to exit, against a bare
interpreter and, with `--baseline REF`, against the qrloop of another commit. Writes the
"## Command-line start-up" section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/cli_startup.py [--runs 30] [--baseline main]

Runs alternate between the variants, so load on the machine falls on each alike; CPU is the
children's user + system time, which load inflates far less than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from results import write_section

SECTION = "## Command-line start-up"
REPO = Path(__file__).resolve().parents[1]
# The console script installed beside this interpreter; PYTHONPATH picks the qrloop it runs.
QRLOOP = str(Path(sys.executable).parent / "qrloop")


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def snapshot(ref: str, folder: Path) -> Path:
    """`src/` of commit `ref`, unpacked under `folder`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--runs", type=int, default=30)
    options.add_argument("--baseline", help="a commit whose `qrloop --help` to time as well")
    options.add_argument("--no-write", action="store_true", help="print only")
    args = options.parse_args()

    here = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    variants = {
        "python -c pass (the interpreter alone)": ([sys.executable, "-c", "pass"], here),
        "qrloop --help": ([QRLOOP, "--help"], here),
        "qrloop --version": ([QRLOOP, "--version"], here),
    }
    with tempfile.TemporaryDirectory() as scratch:
        if args.baseline:
            old = {**os.environ, "PYTHONPATH": str(snapshot(args.baseline, Path(scratch)))}
            baseline = _git("rev-parse", "--short=12", args.baseline)
            name = f"qrloop --help at {args.baseline} ({baseline})"
            variants[name] = (variants["qrloop --help"][0], old)
        for argv, env in variants.values():  # warm the page cache and .pyc files
            run_once(argv, env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, (argv, env) in variants.items():
                times[name].append(run_once(argv, env))

    rows = [
        f"| {name} | {1000 * statistics.median(w for w, _ in runs):.0f}"
        f" | {1000 * min(w for w, _ in runs):.0f}"
        f" | {1000 * statistics.median(c for _, c in runs):.0f} |"
        for name, runs in times.items()
    ]
    commit = _git("rev-parse", "--short=12", "HEAD")
    if _git("status", "--porcelain", "src"):
        commit += " + uncommitted changes in src/"
    command = " ".join(["python benchmarks/cli_startup.py", *sys.argv[1:]])
    section = "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` on {os.cpu_count()}"
            f" CPUs (load average {os.getloadavg()[0]:.1f}), Python"
            f" {sys.version.split()[0]}, qrloop {commit}; {args.runs} runs of each, alternated."
            " Target: `qrloop --help` under 500 ms.",
            "",
            "| command | median ms | fastest ms | CPU ms (median) |",
            "|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    print(section)
    if not args.no_write:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
