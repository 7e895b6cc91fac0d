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

Clients alternate within each round, on the same server, in two placements: "1 + 1", the
client process (every thread) on one core and Valkey on the other, as an API process has
about a core of its own; and "shared", both free to use either core. Reported: calls/s, the
p50 and p99 of one call's time, the client process's CPU per call (all its threads: GLIDE's
Rust runtime too) and Valkey's. Writes the "## Pipe vs GLIDE" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import redis
import uvloop
from machine import describe
from ports import free_port
from results import publish
from valkey_script import PARTITIONS, cpu_seconds, redeem_call, start_valkey

from qrloop import keyspace
from qrloop.redemption import store
from qrloop.redemption.pipe import RedisPipe

SECTION = "## Pipe vs GLIDE"
TIMEOUT_SECONDS = 2.0
Call = Callable[[list[str], list[str | int]], Awaitable[object]]


ALL_CORES = set(range(os.cpu_count() or 1))
# placement -> (the client's cores, Valkey's cores)
PLACEMENTS = {"1 + 1": ({0}, {1}), "shared": (ALL_CORES, ALL_CORES)}


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of the process on these cores (threads started later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


@dataclass
class Run:
    placement: str
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
            for placement, (client_cores, valkey_cores) in PLACEMENTS.items():
                pin(os.getpid(), client_cores)
                pin(valkey.pid, valkey_cores)
                for concurrency in (8, 64):
                    names = list(CLIENTS)
                    order = names if round_no % 2 else names[::-1]
                    for client in order:
                        offset += args.calls + 1
                        elapsed, latencies, used, valkey_used = uvloop.run(
                            measure(client, port, valkey.pid, offset, args.calls, concurrency)
                        )
                        run = Run(
                            placement, client, concurrency, round_no, args.calls, elapsed,
                            latencies, used, valkey_used,
                        )  # fmt: skip
                        print(
                            f"round {round_no} {placement} c={concurrency} {client}:"
                            f" {run.rate:,.0f} calls/s, p99 {run.percentile(0.99):.2f} ms",
                            flush=True,
                        )
                        runs.append(run)
    finally:
        valkey.kill()
        valkey.wait()
        shutil.rmtree(folder, ignore_errors=True)
    publish(SECTION, report(runs, args), write=not args.no_write)


def _median(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(run) for run in runs)


def report(runs: list[Run], args: argparse.Namespace) -> str:
    rows, ratios = [], []
    for placement in PLACEMENTS:
        for concurrency in (8, 64):
            cells = [r for r in runs if (r.placement, r.concurrency) == (placement, concurrency)]
            for client in CLIENTS:
                cell = [r for r in cells if r.client == client]
                rate = _median(cell, lambda r: r.rate)
                rows.append(
                    f"| {placement} | {concurrency} | {client} | {rate:,.0f}"
                    f" | {_median(cell, lambda r: r.percentile(0.5)):.2f}"
                    f" | {_median(cell, lambda r: r.percentile(0.99)):.2f}"
                    f" | {_median(cell, lambda r: r.client_cpu / r.calls * 1e6):.1f}"
                    f" | {_median(cell, lambda r: r.valkey_cpu / r.calls * 1e6):.1f} |"
                )
            by_round = {(r.round, r.client): r for r in cells}
            for glide in ("glide", "glide-evalsha"):
                rounds = range(1, args.rounds + 1)
                pairs = [(by_round[(n, glide)], by_round[(n, "pipe")]) for n in rounds]
                within = [g.rate / p.rate for g, p in pairs]
                cpu = [(g.client_cpu / g.calls) / (p.client_cpu / p.calls) for g, p in pairs]
                ratios.append(
                    f"| {placement} | {concurrency} | {glide} | {statistics.median(within):.2f}"
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
            *describe(
                f"valkey-glide {metadata.version('valkey-glide')},"
                f" redis-py {metadata.version('redis')}, hiredis {metadata.version('hiredis')}"
            ),
            "",
            "Medians over rounds. *1 + 1*: the client process on one core, Valkey on the other;"
            " *shared*: both on either. Client CPU: the client process, every thread, per call.",
            "",
            "| cores | callers | client | calls/s | p50 ms | p99 ms | client CPU µs/call"
            " | Valkey CPU µs/call |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "GLIDE against the pipe, within each round (same server, back to back):",
            "",
            "| cores | callers | GLIDE variant | GLIDE/pipe calls/s (median) | range"
            " | GLIDE/pipe client CPU per call |",
            "|---|---:|---|---:|---|---:|",
            *ratios,
            "",
        ]
    )


if __name__ == "__main__":
    main()
