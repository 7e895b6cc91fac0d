"""The hot path's Redis client against valkey-glide, on the same machine in one run.

    .venv/bin/pip install valkey-glide     # not a qrloop dependency: only this script uses it
    .venv/bin/python benchmarks/pipe_vs_glide.py [--calls 20000] [--rounds 3] [--no-write]

Both run the real redeem.lua by EVALSHA with the same KEYS and ARGV (benchmarks/valkey_script.py
makes them, one fresh serial per call), from N concurrent callers (8 and 64) in one asyncio
process on uvloop, as an API process calls it:

  pipe   qrloop.redemption.pipe.RedisPipe: one connection, every call of an event-loop tick
         written at once, replies parsed by hiredis (`evalsha`: NOSCRIPT loads the script)
  glide  valkey-glide's GlideClient (a Rust core, one multiplexed connection):
         `invoke_script`, GLIDE's way to run a script (EVALSHA, loading it on NOSCRIPT)
  glide-evalsha  the same client sending `EVALSHA` itself (`custom_command`), loading the
         script on NOSCRIPT as the pipe does: GLIDE's thinnest path

Equal safety: both give a call 2 s (`RedisPipe(timeout=2.0)`, GLIDE `request_timeout=2000`),
both fail a call at once when the connection is gone (qrloop answers 503 unavailable: fail
closed), neither retries a script call by itself (a redemption must not run twice), and both
talk to the same Valkey, which fsyncs every write (AOF, appendfsync always) before answering.
Every call must answer `redeemed` for its own serial.

Clients alternate within each round, on the same server. Reported: calls/s, the p50 and p99 of
one call's time, the client process's CPU per call (all its threads: GLIDE's Rust runtime
too) and Valkey's. Writes the "## Pipe vs GLIDE" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import redis
import uvloop
from ports import free_port
from results import write_section
from valkey_script import PARTITIONS, cpu_seconds, redeem_call, start_valkey

from qrloop import keyspace
from qrloop.redemption import store
from qrloop.redemption.pipe import RedisPipe

SECTION = "## Pipe vs GLIDE"
HERE = Path(__file__).resolve().parent
TIMEOUT_SECONDS = 2.0
Call = Callable[[list[str], list[str | int]], Awaitable[object]]


@dataclass
class Run:
    client: str
    concurrency: int
    round: int
    calls: int
    seconds: float
    latencies: list[float]
    client_cpu: float
    valkey_cpu: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


async def pipe_client(port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    pipe = RedisPipe(f"redis://127.0.0.1:{port}/0", timeout=TIMEOUT_SECONDS)

    async def call(keys: list[str], args: list[str | int]) -> object:
        return await pipe.evalsha(store._REDEEM, keys, args)

    return call, pipe.close


async def glide_client(port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress, Script

    config = GlideClientConfiguration(
        [NodeAddress("127.0.0.1", port)], request_timeout=int(TIMEOUT_SECONDS * 1000)
    )
    client = await GlideClient.create(config)
    script = Script(store._REDEEM.source)

    async def call(keys: list[str], args: list[str | int]) -> object:
        return await client.invoke_script(script, keys=keys, args=[str(a) for a in args])

    return call, client.close


async def glide_evalsha_client(port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress, RequestError

    config = GlideClientConfiguration(
        [NodeAddress("127.0.0.1", port)], request_timeout=int(TIMEOUT_SECONDS * 1000)
    )
    client = await GlideClient.create(config)
    redeem = store._REDEEM

    async def call(keys: list[str], args: list[str | int]) -> object:
        command = ["EVALSHA", redeem.sha, str(len(keys)), *keys, *map(str, args)]
        try:
            return await client.custom_command(command)
        except RequestError as error:
            if "NOSCRIPT" not in str(error):
                raise
            await client.custom_command(["SCRIPT", "LOAD", redeem.source])
            return await client.custom_command(command)

    return call, client.close


CLIENTS = {"pipe": pipe_client, "glide": glide_client, "glide-evalsha": glide_evalsha_client}


async def measure(
    client: str, port: int, valkey_pid: int, offset: int, calls: int, concurrency: int
) -> tuple[float, list[float], float, float]:
    call, close = await CLIENTS[client](port)
    make = redeem_call(offset)
    await call(*make(0))  # connect and load the script outside the timing
    issued = 0
    latencies: list[float] = []

    async def caller() -> None:
        nonlocal issued
        while issued < calls:
            issued += 1
            keys, args = make(issued)
            sent = time.perf_counter()
            answer = await call(keys, args)
            latencies.append(time.perf_counter() - sent)
            assert isinstance(answer, list) and answer[0] == b"redeemed", answer

    cpu, valkey = time.process_time(), cpu_seconds(valkey_pid)
    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    used, valkey_used = time.process_time() - cpu, cpu_seconds(valkey_pid) - valkey
    await close()
    return elapsed, latencies, used, valkey_used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qrloop-bench-glide-"))
    port = free_port()
    valkey = start_valkey(folder, port)
    runs: list[Run] = []
    try:
        admin = redis.Redis(port=port)
        for partition in range(PARTITIONS):
            admin.set(keyspace.epoch(partition), 1)
        offset = 0
        for round_no in range(1, args.rounds + 1):
            for concurrency in (8, 64):
                names = list(CLIENTS)
                order = names if round_no % 2 else names[::-1]
                for client in order:
                    offset += args.calls + 1
                    elapsed, latencies, used, valkey_used = uvloop.run(
                        measure(client, port, valkey.pid, offset, args.calls, concurrency)
                    )
                    run = Run(
                        client, concurrency, round_no, args.calls, elapsed, latencies, used,
                        valkey_used,
                    )  # fmt: skip
                    print(
                        f"round {round_no} c={concurrency} {client}: {run.rate:,.0f} calls/s,"
                        f" p99 {run.percentile(0.99):.2f} ms",
                        flush=True,
                    )
                    runs.append(run)
    finally:
        valkey.kill()
        valkey.wait()
        shutil.rmtree(folder, ignore_errors=True)
    section = report(runs, args)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)


def _median(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(run) for run in runs)


def report(runs: list[Run], args: argparse.Namespace) -> str:
    rows, ratios = [], []
    for concurrency in (8, 64):
        for client in CLIENTS:
            cell = [r for r in runs if r.client == client and r.concurrency == concurrency]
            rate = _median(cell, lambda r: r.rate)
            rows.append(
                f"| single Valkey | {concurrency} | {client} | {rate:,.0f}"
                f" | {_median(cell, lambda r: r.percentile(0.5)):.2f}"
                f" | {_median(cell, lambda r: r.percentile(0.99)):.2f}"
                f" | {_median(cell, lambda r: r.client_cpu / r.calls * 1e6):.1f}"
                f" | {_median(cell, lambda r: r.valkey_cpu / r.calls * 1e6):.1f} |"
            )
        by_round = {(r.round, r.client): r for r in runs if r.concurrency == concurrency}
        for glide in ("glide", "glide-evalsha"):
            rounds = range(1, args.rounds + 1)
            pairs = [(by_round[(n, glide)], by_round[(n, "pipe")]) for n in rounds]
            within = [g.rate / p.rate for g, p in pairs]
            cpu = [g.client_cpu / p.client_cpu for g, p in pairs]
            ratios.append(
                f"| single Valkey | {concurrency} | {glide} | {statistics.median(within):.2f}"
                f" | {min(within):.2f} to {max(within):.2f} | {statistics.median(cpu):.2f} |"
            )
    return "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python"
            f" benchmarks/pipe_vs_glide.py --calls {args.calls} --rounds {args.rounds}`:"
            f" redeem.lua by EVALSHA, the same KEYS and ARGV, {args.calls:,} calls per run, one"
            " client process on uvloop, one Valkey with AOF and appendfsync always.",
            "",
            *machine(),
            "",
            "Medians over rounds. Client CPU: the client process, every thread, per call.",
            "",
            "| server | callers | client | calls/s | p50 ms | p99 ms | client CPU µs/call"
            " | Valkey CPU µs/call |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "GLIDE against the pipe, within each round (same server, back to back):",
            "",
            "| server | callers | GLIDE variant | GLIDE/pipe calls/s (median) | range"
            " | GLIDE/pipe client CPU |",
            "|---|---:|---|---:|---|---:|",
            *ratios,
            "",
        ]
    )


def machine() -> list[str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _run("lscpu").splitlines()
            if "Model name" in line
        ),
        platform.processor() or "?",
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return [
        f"- CPU: {model}, {os.cpu_count()} CPUs; load average at the end {load}",
        f"- Python: {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- valkey-glide {metadata.version('valkey-glide')}, redis-py {metadata.version('redis')},"
        f" hiredis {metadata.version('hiredis')}",
        f"- qrloop: {_run('git', '-C', str(HERE), 'rev-parse', '--short', 'HEAD').strip() or '?'}",
    ]


def _run(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


if __name__ == "__main__":
    main()
