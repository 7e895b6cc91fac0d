"""What the till's metrics cost per request: one answer count and one latency observation, in
prometheus_client's multiprocess mode (values in memory-mapped files) as `qrloop api` runs it,
against an empty call. Writes the "## Metrics cost" section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/metrics_cost.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime

from results import write_section

SECTION = "## Metrics cost"

# Run in a fresh interpreter: prometheus_client picks its mode when it is first imported.
_MEASURE = """
import sys, timeit
from qrloop import metrics
calls = int(sys.argv[1])
histogram = metrics.TILL_LATENCY.labels("/v1/redeem")
work = {
    "empty call": lambda: None,
    "count": lambda: metrics.count_answer("/v1/redeem", "redeemed"),
    "observe": lambda: histogram.observe(0.0012),
}
for name, call in work.items():
    # The fastest of several runs: what the work costs, less what a busy machine adds.
    best = min(timeit.repeat(call, number=calls // 10, repeat=10)) / (calls // 10)
    print(f"{name}\t{best * 1e9:.0f}")
"""


def measure(calls: int, multiprocess: bool) -> dict[str, int]:
    env = dict(os.environ)
    folder = tempfile.mkdtemp(prefix="qrloop-metrics-")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if multiprocess:
        env["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(calls)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {name: int(ns) for name, ns in (line.split("\t") for line in out.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    rows = []
    for label, multiprocess in (("multiprocess (files)", True), ("one process (memory)", False)):
        ns = measure(args.calls, multiprocess)
        added = ns["count"] + ns["observe"] - 2 * ns["empty call"]
        rows.append(f"| {label} | {ns['empty call']} | {ns['count']} | {ns['observe']} | {added} |")
        print(rows[-1])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"{SECTION}\n\nRun {when} with `.venv/bin/python benchmarks/metrics_cost.py --calls"
        f" {args.calls}` on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), one"
        " process, no HTTP, the fastest of 10 runs: what the till adds per request, one answer"
        " count and one latency observation.\n\n"
        "| mode | empty call ns | count ns | observe ns | added per request ns |\n"
        "|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    write_section(SECTION, section)


if __name__ == "__main__":
    main()
