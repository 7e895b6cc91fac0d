"""What a dashboard login's password hash costs, and what it does to the event loop that also
answers the tills: argon2id as qrloop hashes (64 MiB, 3 passes, one lane, one hash at a time
per process) beside argon2-cffi's default (four lanes) and two hashes at a time. Writes the
"## Dashboard passwords" section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/dashboard_passwords.py [--hashes 16] [--rounds 5]

The loop's health is how late a 1 ms timer wakes while the hashes run (p99 and worst), as a
till's request would wait.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from machine import describe
from results import publish

from qrloop.dashboard import passwords

SECTION = "## Dashboard passwords"
COMMAND = ".venv/bin/python benchmarks/dashboard_passwords.py"


@dataclass(frozen=True)
class Variant:
    name: str
    hasher: PasswordHasher
    at_once: int


VARIANTS = (
    Variant("qrloop: t=3, 64 MiB, 1 lane, one at a time", passwords._HASHER, 1),
    Variant("4 lanes (argon2-cffi's default), one at a time", PasswordHasher(), 1),
    Variant("4 lanes, two at a time", PasswordHasher(), 2),
)


async def _late_wakeups(stop: asyncio.Event) -> list[float]:
    late: list[float] = []
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append(time.perf_counter() - start - 0.001)
    return late


async def measure(variant: Variant, hashes: int) -> tuple[float, float, float]:
    """Milliseconds per hash (wall, all hashes at once), and the loop's p99 and worst lateness."""
    passwords._HASHER = variant.hasher
    passwords._AT_ONCE = asyncio.Semaphore(variant.at_once)
    stop = asyncio.Event()
    watcher = asyncio.create_task(_late_wakeups(stop))
    start = time.perf_counter()
    await asyncio.gather(*(passwords.hashed("correct horse battery staple") for _ in range(hashes)))
    wall = time.perf_counter() - start
    stop.set()
    late = sorted(await watcher)
    p99 = statistics.quantiles(late, n=100)[98]
    return wall / hashes * 1000, p99 * 1000, late[-1] * 1000


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--hashes", type=int, default=16, help="hashes asked for at once")
    options.add_argument("--rounds", type=int, default=5, help="runs of each variant")
    options.add_argument("--no-write", action="store_true", help="print only")
    args = options.parse_args()
    chosen = passwords._HASHER
    runs: dict[str, list[tuple[float, float, float]]] = {v.name: [] for v in VARIANTS}
    for _ in range(args.rounds):  # alternating, so load on the machine falls on each alike
        for variant in VARIANTS:
            runs[variant.name].append(asyncio.run(measure(variant, args.hashes)))
    rows = [
        "| {} | {:.0f} | {:.1f} | {:.1f} |".format(
            name, *(statistics.median(column) for column in zip(*measured, strict=True))
        )
        for name, measured in runs.items()
    ]
    passwords._HASHER = chosen
    section = "\n".join(
        [
            SECTION,
            "",
            f"{args.hashes} logins' hashes asked for at once in one process, a 1 ms timer beside"
            f" them on the same event loop; medians of {args.rounds} rounds, the variants"
            f" alternating ({datetime.now(UTC):%Y-%m-%d}).",
            "",
            "| argon2id | ms per hash | loop late p99 (ms) | loop late worst (ms) |",
            "|---|---|---|---|",
            *rows,
            "",
            *describe(f"command: {COMMAND} --hashes {args.hashes} --rounds {args.rounds}"),
            "",
        ]
    )
    publish(SECTION, section, not args.no_write)


if __name__ == "__main__":
    main()
