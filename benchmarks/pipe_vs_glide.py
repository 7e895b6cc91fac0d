"""The hot path's Redis client against valkey-glide, on the same machine in one run.

    .venv/bin/pip install valkey-glide     # not a qrloop dependency: only this script uses it
    .venv/bin/python benchmarks/pipe_vs_glide.py [--calls 10000] [--rounds 3] [--no-write]

Every client runs the real redeem.lua by EVALSHA with the same KEYS and ARGV
(benchmarks/valkey_script.py makes them: one fresh serial per call, the calls spread over one
campaign per partition), from N concurrent callers (8 and 64) in one asyncio process on
uvloop, as an API process calls it, against two servers started side by side on loopback,
every node with AOF and appendfsync always:

  single   one valkey-server
  cluster  3 primaries (tests/cluster_support.py forms it)

The clients:

  pipe   what qrloop's till uses: `RedisPipe` on one server, `ClusterPipe` (one RedisPipe per
         primary, routed by slot, MOVED/ASK followed) on a cluster; every call of an
         event-loop tick written at once, replies parsed by hiredis; NOSCRIPT loads the script
  glide  valkey-glide's GlideClient / GlideClusterClient (a Rust core, multiplexed
         connections, cluster-aware): `invoke_script`, GLIDE's way to run a script (EVALSHA,
         loading it on NOSCRIPT)
  glide-evalsha  the same clients sending `EVALSHA` themselves (`custom_command`), loading the
         script on NOSCRIPT as the pipe does: GLIDE's thinnest path

Equal safety: each call gets 2 s (`timeout=2.0`, GLIDE `request_timeout=2000`), fails at once
when its connection is gone (qrloop answers 503 unavailable: fail closed), is never retried
by the client itself (a redemption must not run twice), and is answered only after the
server's AOF fsync. Every call must answer `redeemed` for its own serial.

Clients alternate within each round, on the same server, in two placements: "1 + 1", the
client process (every thread) on one core and the server's processes on the other, as an
API process has about a core of its own; and "shared", all free to use either core.
Reported: calls/s, the p50 and p99 of one call's time, the client process's CPU per call
(all its threads: GLIDE's Rust runtime too) and the server's (every node). Writes the
"## Pipe vs GLIDE" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import redis
import uvloop
from machine import describe
from ports import free_port
from results import publish
from valkey_script import PARTITIONS, cpu_seconds, redeem_call, start_valkey

from qrloop import keyspace
from qrloop.redemption import store
from qrloop.redemption.cluster import pipe_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from cluster_support import running_cluster

SECTION = "## Pipe vs GLIDE"
TIMEOUT_SECONDS = 2.0
Call = Callable[[list[str], list[str | int]], Awaitable[object]]
Close = Callable[[], Awaitable[None]]

ALL_CORES = set(range(os.cpu_count() or 1))
# placement -> (the client's cores, the server's cores)
PLACEMENTS = {"1 + 1": ({0}, {1}), "shared": (ALL_CORES, ALL_CORES)}


@dataclass(frozen=True)
class Server:
    """A server to call: where, whether a cluster, the processes that serve it."""

    name: str
    url: str
    cluster: bool
    pids: list[int]

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port


@contextlib.contextmanager
def servers(folder: Path) -> Iterator[list[Server]]:
    """One Valkey and a 3-primary cluster, every partition's epoch set on each."""
    port = free_port()
    (folder / "single").mkdir()
    single = start_valkey(folder / "single", port)
    try:
        with running_cluster(folder / "cluster", primaries=3, replicas=0) as cluster:
            made = [
                Server("single", f"redis://127.0.0.1:{port}/0", False, [single.pid]),
                Server(
                    "cluster",
                    cluster.url,
                    True,
                    [node.process.pid for node in cluster.nodes if node.process is not None],
                ),
            ]
            with redis.Redis(port=port) as client, cluster.client() as cluster_client:
                for partition in range(PARTITIONS):
                    client.set(keyspace.epoch(partition), 1)
                    cluster_client.set(keyspace.epoch(partition), 1)
            yield made
    finally:
        single.kill()
        single.wait()


def campaign_per_partition() -> list[int]:
    """A campaign id whose first serials fall in each partition, so calls reach every slot."""
    found: dict[int, int] = {}
    campaign = 1
    while len(found) < PARTITIONS:
        found.setdefault(keyspace.partition_of(campaign, 0, PARTITIONS), campaign)
        campaign += 1
    return [found[p] for p in range(PARTITIONS)]


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of the process on these cores (threads started later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


@dataclass
class Run:
    server: str
    placement: str
    client: str
    concurrency: int
    round: int
    calls: int
    seconds: float
    latencies: list[float]
    client_cpu: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


async def pipe_client(server: Server) -> tuple[Call, Close]:
    pipe = pipe_for(server.url, server.cluster, timeout=TIMEOUT_SECONDS)

    async def call(keys: list[str], args: list[str | int]) -> object:
        return await pipe.evalsha(store._REDEEM, keys, args)

    return call, pipe.close


async def _glide(server: Server) -> object:
    from glide import (
        GlideClient,
        GlideClientConfiguration,
        GlideClusterClient,
        GlideClusterClientConfiguration,
        NodeAddress,
    )

    nodes = [NodeAddress(*server.address)]
    timeout = int(TIMEOUT_SECONDS * 1000)
    if server.cluster:
        config = GlideClusterClientConfiguration(nodes, request_timeout=timeout)
        return await GlideClusterClient.create(config)
    return await GlideClient.create(GlideClientConfiguration(nodes, request_timeout=timeout))


async def glide_client(server: Server) -> tuple[Call, Close]:
    from glide import Script

    client = await _glide(server)
    script = Script(store._REDEEM.source)

    async def call(keys: list[str], args: list[str | int]) -> object:
        return await client.invoke_script(script, keys=keys, args=[str(a) for a in args])

    return call, client.close


async def glide_evalsha_client(server: Server) -> tuple[Call, Close]:
    from glide import RequestError

    client = await _glide(server)
    redeem = store._REDEEM

    async def call(keys: list[str], args: list[str | int]) -> object:
        command = ["EVALSHA", redeem.sha, str(len(keys)), *keys, *map(str, args)]
        try:
            return await client.custom_command(command)
        except RequestError as error:
            if "NOSCRIPT" not in str(error):
                raise
            # On a cluster the key routes EVAL, which also caches the script on its node.
            return await client.custom_command(
                ["EVAL", redeem.source, str(len(keys)), *keys, *map(str, args)]
            )

    return call, client.close


CLIENTS = {"pipe": pipe_client, "glide": glide_client, "glide-evalsha": glide_evalsha_client}


async def measure(
    client: str, server: Server, offset: int, calls: int, concurrency: int
) -> tuple[float, list[float], float, float]:
    call, close = await CLIENTS[client](server)
    make = redeem_call(offset, campaign_per_partition())
    for n in range(PARTITIONS):  # connect, and load the script on every node, untimed
        await call(*make(n))
    issued = PARTITIONS
    latencies: list[float] = []

    async def caller() -> None:
        nonlocal issued
        while issued < calls + PARTITIONS:
            issued += 1
            keys, args = make(issued)
            sent = time.perf_counter()
            answer = await call(keys, args)
            latencies.append(time.perf_counter() - sent)
            assert isinstance(answer, list) and answer[0] == b"redeemed", answer

    cpu, served = time.process_time(), sum(map(cpu_seconds, server.pids))
    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    used = time.process_time() - cpu
    server_used = sum(map(cpu_seconds, server.pids)) - served
    await close()
    return elapsed, latencies, used, server_used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="qrloop-bench-glide-") as folder,
        servers(Path(folder)) as started,
    ):
        for round_no in range(1, args.rounds + 1):
            for server in started:
                for placement, (client_cores, server_cores) in PLACEMENTS.items():
                    pin(os.getpid(), client_cores)
                    for pid in server.pids:
                        pin(pid, server_cores)
                    runs += one_cell(server, placement, round_no, args.calls, len(runs))
    publish(SECTION, report(runs, args), write=not args.no_write)


def one_cell(server: Server, placement: str, round_no: int, calls: int, done: int) -> list[Run]:
    """Every client at 8 and at 64 callers, in an order that alternates between rounds; each
    run redeems serials of its own (`done` runs came before)."""
    runs = []
    for concurrency in (8, 64):
        names = list(CLIENTS)
        for client in names if round_no % 2 else names[::-1]:
            offset = (done + len(runs) + 1) * (calls + PARTITIONS + 1)
            measured = uvloop.run(measure(client, server, offset, calls, concurrency))
            run = Run(server.name, placement, client, concurrency, round_no, calls, *measured)
            print(
                f"round {round_no} {server.name} {placement} c={concurrency} {client}:"
                f" {run.rate:,.0f} calls/s, p99 {run.percentile(0.99):.2f} ms",
                flush=True,
            )
            runs.append(run)
    return runs


def _median(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(run) for run in runs)


def report(runs: list[Run], args: argparse.Namespace) -> str:
    rows, ratios = [], []
    cells = sorted(
        {(r.server, r.placement, r.concurrency) for r in runs},
        key=lambda c: (c[0] != "single", c[1] != "1 + 1", c[2]),
    )
    for server, placement, concurrency in cells:
        runs_here = [
            r
            for r in runs
            if (r.server, r.placement, r.concurrency) == (server, placement, concurrency)
        ]
        for client in CLIENTS:
            cell = [r for r in runs_here if r.client == client]
            rows.append(
                f"| {server} | {placement} | {concurrency} | {client}"
                f" | {_median(cell, lambda r: r.rate):,.0f}"
                f" | {_median(cell, lambda r: r.percentile(0.5)):.2f}"
                f" | {_median(cell, lambda r: r.percentile(0.99)):.2f}"
                f" | {_median(cell, lambda r: r.client_cpu / r.calls * 1e6):.1f}"
                f" | {_median(cell, lambda r: r.server_cpu / r.calls * 1e6):.1f} |"
            )
        by_round = {(r.round, r.client): r for r in runs_here}
        for glide in ("glide", "glide-evalsha"):
            pairs = [
                (by_round[(n, glide)], by_round[(n, "pipe")]) for n in range(1, args.rounds + 1)
            ]
            within = [g.rate / p.rate for g, p in pairs]
            cpu = [(g.client_cpu / g.calls) / (p.client_cpu / p.calls) for g, p in pairs]
            ratios.append(
                f"| {server} | {placement} | {concurrency} | {glide}"
                f" | {statistics.median(within):.2f} | {min(within):.2f} to {max(within):.2f}"
                f" | {statistics.median(cpu):.2f} |"
            )
    return "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python"
            f" benchmarks/pipe_vs_glide.py --calls {args.calls} --rounds {args.rounds}`:"
            f" redeem.lua by EVALSHA, the same KEYS and ARGV, {args.calls:,} calls per run"
            " spread over the 16 partitions, one client process on uvloop; one Valkey and a"
            " 3-primary cluster, every node with AOF and appendfsync always.",
            "",
            *describe(
                f"valkey-glide {metadata.version('valkey-glide')},"
                f" redis-py {metadata.version('redis')}, hiredis {metadata.version('hiredis')}"
            ),
            "",
            "Medians over rounds. *1 + 1*: the client process on one core, the server's"
            " processes on the other; *shared*: all on either. Client CPU: the client process,"
            " every thread, per call; server CPU: every node's, per call.",
            "",
            "| server | cores | callers | client | calls/s | p50 ms | p99 ms | client CPU µs/call"
            " | server CPU µs/call |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "GLIDE against the pipe, within each round (same server, back to back):",
            "",
            "| server | cores | callers | GLIDE variant | GLIDE/pipe calls/s (median) | range"
            " | GLIDE/pipe client CPU per call |",
            "|---|---|---:|---|---:|---|---:|",
            *ratios,
            "",
        ]
    )


if __name__ == "__main__":
    main()
