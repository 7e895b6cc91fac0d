"""Redeem, whole system: `qrloop serve` as the README runs it, every role on the same cores.

    python benchmarks/redeem.py --whole [--duration 10] [--rounds 2] [--connections 64 8 1]
                                        [--baseline REV]

benchmarks/redeem.py's own variants run the API and Valkey alone. This one serves the README
way: `python -m qrloop serve` (the API with its default QRLOOP_API_PROCESSES=1, a settlement
worker and a signer under serve's supervisor) on the embedded PostgreSQL and Valkey, which
this script starts through `qrloop.embedded`, the code `serve` itself would run them with, and
hands to serve by URL so their CPU can be told apart. Each campaign redemption books four
ledger entries (platform fee), as in benchmarks/settlement.py. For every number of
connections, wrk redeems distinct valid codes through `POST /v1/redeem`, then the script waits
for the settlement backlog to empty and reads back:

  - wrk's rate and latency;
  - settlement lag per redemption: the commit time of its row's transaction
    (`pg_xact_commit_timestamp(xmin)`, PostgreSQL restarted with track_commit_timestamp on)
    minus `redeemed_at`, and how far behind the backlog was when wrk stopped;
  - CPU per redemption by role (api / worker / signer / valkey / postgres / wrk / others),
    from /proc, from wrk's start until the last of the run's redemptions is settled, divided
    by the redemptions answered 200.

`--baseline REV` also serves git revision REV's src/ (archived, first on PYTHONPATH),
alternated with this checkout's within each round, so a change is measured as a ratio
against its baseline on the same stores and in the same minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from merchant_load import snapshot
from ports import free_port
from redeem import (
    FIRST_GUESS_RPS,
    Bench,
    Fixture,
    Http,
    Run,
    Service,
    Stores,
    consumed,
    every_run,
    heading,
    say,
    seed,
    source_identity,
    sql,
    wrk,
)
from settlement import _LAGS, PLATFORM_FEE, backlog, ensure_groups, fetch, track_commits

SECTION = "## Redeem, whole system"
ROLES = ("api", "worker", "signer")
PIPELINE = (*ROLES, "valkey", "postgres")  # every process of the service: the CPU target
PARTS = (*PIPELINE, "wrk", "others")
SETTLE_TIMEOUT = 60.0  # after wrk stops, the run's redemptions must all settle within this
POLL_SECONDS = 0.02
TARGET_P99_MS = 5.0  # at 8 connections
TARGET_LAG_P99_MS = 1000.0
TARGET_CPU_US = 250.0

# The run's worker transactions (rows grouped by the transaction that inserted them): counted,
# not timed, so a change to batching shows even on a machine busy with other work.
_TRANSACTIONS = "SELECT count(DISTINCT xmin::text) FROM redemptions WHERE redeemed_at >= $1"
_WAL = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"


class Serve(Service):
    """`python -m qrloop serve`, the command `make serve` runs, on the given stores."""

    def __init__(self, env: dict[str, str], workdir: Path, label: str) -> None:
        self.base_url = f"http://127.0.0.1:{env['QRLOOP_PORT']}"
        super().__init__(
            [sys.executable, "-m", "qrloop", "serve"],
            env,
            workdir / f"serve-{label}.log",
            f"qrloop serve ({label}) on {self.base_url}",
        )

    def roles(self) -> dict[str, list[int]]:
        """The pids of serve's children by role (`python -m qrloop ROLE`)."""
        import psutil

        found: dict[str, list[int]] = {role: [] for role in ROLES}
        if self.proc is None:
            return found
        for child in psutil.Process(self.proc.pid).children():
            try:
                command = child.cmdline()
            except psutil.Error:
                continue
            # Empty while a child is being forked or reaped.
            if command and command[-1] in found:
                found[command[-1]].append(child.pid)
        return found

    def ready(self) -> bool:
        if not all(self.roles().values()):
            return False
        try:
            return Http(self.base_url).call("GET", "/health/ready", timeout=2)[0] == 200
        except OSError:
            return False


@dataclass
class WholeRun:
    source: str  # "baseline" or "this"
    run: Run
    redeemed: int = 0  # answered 200
    cpu_us: dict[str, float] = field(default_factory=dict)  # per redemption, wrk start → settled
    lag_ms: tuple[float, float] = (math.nan, math.nan)  # p50, p99
    lag_max_ms: float = math.nan
    settled: int = 0
    backlog_end: int = 0  # when wrk stopped
    tail_s: float = math.nan  # wrk's end → empty backlog
    transactions: int = 0  # worker transactions that inserted the run's redemptions
    wal_bytes: float = math.nan  # PostgreSQL WAL written, wrk start → settled

    @property
    def pipeline_us(self) -> float:
        return sum(self.cpu_us.get(part, math.nan) for part in PIPELINE)


class Whole(Bench):
    def __init__(self, args: argparse.Namespace, env: dict[str, str], stores_: Stores) -> None:
        super().__init__(args, env, stores_)
        self.partitions = int(env.get("QRLOOP_PARTITIONS", "16"))
        self.committed_at = False
        self.whole: list[WholeRun] = []
        self.best: dict[int, float] = {}  # fastest rate seen per connection count
        self.sources: dict[str, str] = {}  # label → PYTHONPATH entry ("" = this checkout)
        self.identities: dict[str, str] = {}
        self.fixture: Fixture | None = None
        self.load: list[tuple[float, float, float]] = []  # the machine's load averages

    def backlog(self) -> int:
        return backlog(self.stores.redis_url, self.partitions)

    def wait_settled(self, timeout: float) -> float | None:
        """Seconds until the settlement backlog is empty, or None if it did not empty."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.backlog() == 0:
                return time.monotonic() - started
            time.sleep(POLL_SECONDS)
        return None

    def serve(self, label: str) -> Serve:
        env = {**self.env, "QRLOOP_PORT": str(free_port())}
        if self.sources[label]:
            env["PYTHONPATH"] = f"{self.sources[label]}:{env['PYTHONPATH']}"
        return Serve(env, self.workdir, label)

    def one(self, serve: Serve, label: str, connections: int, round_: int, warm: bool) -> None:
        assert self.fixture is not None and serve.proc is not None
        http = Http(serve.base_url)
        seconds = self.args.warmup if warm else self.args.duration
        rate = self.best.get(connections, FIRST_GUESS_RPS / 2)
        codes = self.codes_for(http, self.fixture, rate, seconds)
        if self.wait_settled(SETTLE_TIMEOUT) is None:
            raise RuntimeError(
                f"the settlement backlog ({self.backlog()}) did not empty before the run;"
                f" {label}'s serve log ends:\n{serve.tail()}"
            )
        roles = serve.roles()
        trees = {"worker": roles["worker"], "signer": roles["signer"]}
        before = consumed(http, self.fixture, self.stores.database_url, "a")
        self.wait_quiet()
        since = datetime.now(UTC)
        wal = float(sql(self.stores.database_url, _WAL))
        start = self.meter.snapshot(roles["api"][0], **trees)
        result = wrk(
            serve.base_url,
            "/v1/redeem",
            connections,
            seconds,
            codes,
            self.fixture.tokens_file,
            self.tag(),
        )
        stopped = self.meter.snapshot(roles["api"][0], **trees)
        backlog_end = self.backlog()
        tail = self.wait_settled(SETTLE_TIMEOUT)
        settled = self.meter.snapshot(roles["api"][0], **trees)
        wal = float(sql(self.stores.database_url, _WAL)) - wal
        if warm:
            return
        result["cpu"] = self.meter.cores(start, stopped)
        after = consumed(http, self.fixture, self.stores.database_url, "a")
        result["server_delta"] = after - before
        run = self.record(1, connections, round_, "a", result)
        whole = WholeRun(label, run, run.requests - run.non_2xx, backlog_end=backlog_end)
        whole.wal_bytes = wal
        self.best[connections] = max(self.best.get(connections, 0.0), run.rps)
        elapsed = settled["t"] - start["t"]
        cores = self.meter.cores(start, settled)
        if whole.redeemed:
            per = elapsed / whole.redeemed * 1e6
            whole.cpu_us = {part: cores.get(part, math.nan) * per for part in PARTS}
        if tail is None:
            run.notes.append(f"the backlog did not empty within {SETTLE_TIMEOUT:.0f}s of the run")
        else:
            whole.tail_s = tail
            row = fetch(self.stores.database_url, _LAGS, since, self.committed_at)[0]
            whole.settled = int(row["n"])
            whole.lag_ms = tuple(row["lag_ms"])
            whole.lag_max_ms = float(row["lag_max_ms"])
            whole.transactions = int(sql(self.stores.database_url, _TRANSACTIONS, since))
            if not 0 <= whole.settled - whole.redeemed <= connections:
                run.notes.append(f"{whole.settled} rows settled for {whole.redeemed} redemptions")
        self.whole.append(whole)
        say(
            f"  {label} c={connections} round {round_}: {run.rps:7.0f}/s p99 {run.p99_ms:6.2f} ms"
            f"  lag p99 {whole.lag_ms[1]:5.0f} ms  {whole.transactions} transactions"
            f"  WAL {whole.wal_bytes / max(1, whole.redeemed):.0f} B"
            f"  CPU {whole.pipeline_us:4.0f} µs/redemption"
            f" ({' / '.join(f'{whole.cpu_us.get(p, math.nan):.0f}' for p in PARTS)})"
            + (f"  !! {'; '.join(run.notes)}" if run.notes else "")
        )

    def run(self) -> None:
        self.committed_at = track_commits(self.stores)  # restarts the embedded PostgreSQL
        ensure_groups(self.stores, self.partitions)
        # This checkout serves first: its serve migrates the stores to its schema, and the
        # fixture is seeded with its CLI (a baseline's may lack options the seed uses).
        self.sources["this"] = ""
        self.identities["this"] = source_identity()
        if self.args.baseline:
            into = Path(tempfile.mkdtemp(prefix="baseline-", dir=self.workdir))
            self.sources["baseline"] = snapshot(self.args.baseline, into)
            self.identities["baseline"] = self.args.baseline
        self.code.append(("at the start", source_identity()))
        self.load.append(os.getloadavg())
        for round_ in range(1, self.args.rounds + 1):
            for label in self.sources:
                with self.serve(label) as serve:
                    if self.fixture is None:
                        self.fixture = seed(
                            Http(serve.base_url), serve.env, self.workdir, platform_fee=PLATFORM_FEE
                        )
                    self.one(serve, label, max(self.args.connections), round_, warm=True)
                    for connections in self.args.connections:
                        self.one(serve, label, connections, round_, warm=False)
        self.code.append(("at the end", source_identity()))
        self.load.append(os.getloadavg())


# --------------------------------------------------------------------------- reporting


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def summary(runs: list[WholeRun]) -> dict[str, Any]:
    return {
        "rps": _median([w.run.rps for w in runs]),
        "p50": _median([w.run.p50_ms for w in runs]),
        "p99": _median([w.run.p99_ms for w in runs]),
        "lag50": _median([w.lag_ms[0] for w in runs]),
        "lag99": _median([w.lag_ms[1] for w in runs]),
        "lagmax": max((w.lag_max_ms for w in runs), default=math.nan),
        "backlog": max((w.backlog_end for w in runs), default=0),
        "tail": _median([w.tail_s for w in runs]),
        "us": {p: _median([w.cpu_us.get(p, math.nan) for w in runs]) for p in PARTS},
        "pipeline": _median([w.pipeline_us for w in runs]),
        "others_cores": _median([w.run.cpu.get("others", math.nan) for w in runs]),
        "per_tx": _median([w.settled / w.transactions for w in runs if w.transactions]),
        "wal": _median([w.wal_bytes / w.redeemed for w in runs if w.redeemed]),
    }


def report(
    args: argparse.Namespace, bench: Whole, info: list[tuple[str, str]], problems: list[str]
) -> str:
    lines = heading(SECTION, "benchmarks/redeem.py")
    sources = ", ".join(f"{label}: {code}" for label, code in bench.identities.items())
    info = [(k, v) for k, v in info if k not in ("Served", "qrloop")]
    tracking = "track_commit_timestamp on (turned on by this benchmark, for the lag)"
    info = [(k, f"{v}, {tracking}" if k == "PostgreSQL" else v) for k, v in info]
    lines += [f"- {name}: {value}" for name, value in info]
    load = " → ".join(" / ".join(f"{x:.1f}" for x in averages) for averages in bench.load)
    lines += [
        f"- qrloop: {sources}",
        f"- Load average (1 / 5 / 15 min) at the start → the end: {load} (2 cores)",
        "- Served: `python -m qrloop serve` as `make serve` runs it (1 API process, a settlement"
        " worker with its default consumers, a signer, under serve's supervisor) on the"
        " embedded PostgreSQL and Valkey, started through `qrloop.embedded` by the benchmark"
        " and given to serve by URL (so each store's CPU is counted apart)",
        "",
        f"{args.duration:g} s per run, {args.rounds} round(s), wrk -t2 (-t1 at 1 connection)"
        f" --latency on `POST /v1/redeem`, every request a distinct valid code of one campaign"
        f" with a platform fee (four ledger entries per redemption); {args.warmup:g} s of"
        " warm-up per serve start. Before each run the previous run's backlog has emptied;"
        " after it the script waits for the settlement backlog to empty again. Lag = the"
        " commit time of the row's transaction minus its `redeemed_at`. CPU per redemption ="
        " CPU-seconds each role used from wrk's start until the run's last redemption was"
        " settled, ÷ redemptions answered 200; *pipeline* sums every process of the service"
        f" ({' + '.join(PIPELINE)}); wrk includes this script; others is the rest of the"
        " machine (other people's work: this machine is shared, so read ratios within a run).",
        "",
        "| qrloop | connections | redemptions/s | p50 ms | p99 ms | lag p50 / p99 ms"
        " | lag max ms | backlog when wrk stopped | empty after s | redemptions per worker"
        " transaction | WAL bytes/redemption | CPU µs/redemption: "
        + " / ".join(PARTS)
        + " | pipeline µs | others (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    for label in bench.identities:
        for c in args.connections:
            runs = [w for w in bench.whole if w.source == label and w.run.connections == c]
            if not runs:
                continue
            s = cells[(label, c)] = summary(runs)
            per_role = " / ".join(f"{s['us'][p]:.0f}" for p in PARTS)
            lines.append(
                f"| {label} | {c} | {s['rps']:.0f} | {s['p50']:.2f} | {s['p99']:.2f}"
                f" | {s['lag50']:.0f} / {s['lag99']:.0f} | {s['lagmax']:.0f} | {s['backlog']}"
                f" | {s['tail']:.2f} | {s['per_tx']:.0f} | {s['wal']:.0f} | {per_role}"
                f" | {s['pipeline']:.0f} | {s['others_cores']:.2f} |"
            )
    if "baseline" in bench.identities:
        lines += ["", *ratios(args, bench)]
    lines += ["", *targets(args, cells)]
    problems = problems + [
        f"- {w.source} c={w.run.connections} round {w.run.round}: {'; '.join(w.run.notes)}"
        for w in bench.whole
        if w.run.notes
    ]
    lines += [
        "",
        "Problems seen:" if problems else "Problems seen: none.",
        *problems,
    ]
    labels = {id(w.run): w.source for w in bench.whole}
    lines += every_run(
        bench.runs,
        ("| qrloop | c | round", "|---|---:|---:"),
        lambda r: f"| {labels.get(id(r), '?')} | {r.connections} | {r.round}",
        ("api", "worker", "signer", "valkey", "postgres", "wrk", "others"),
    )
    return "\n".join(lines)


def ratios(args: argparse.Namespace, bench: Whole) -> list[str]:
    """this ÷ baseline, per round (same stores, back to back), median over rounds."""
    out = [
        "this ÷ baseline, per round then the median (< 1 is less for time and CPU):",
        "",
        "| connections | redemptions/s | p99 | lag p99 | worker transactions per redemption"
        " | WAL bytes | pipeline CPU µs | PostgreSQL µs | worker µs | Valkey µs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in args.connections:
        pairs = []
        for n in range(1, args.rounds + 1):
            got = {w.source: w for w in bench.whole if w.run.connections == c and w.run.round == n}
            if "baseline" in got and "this" in got:
                pairs.append((got["this"], got["baseline"]))

        def ratio(value: Any, pairs: list[tuple[WholeRun, WholeRun]] = pairs) -> str:
            values = [value(a) / value(b) for a, b in pairs if value(b)]
            return f"{_median(values):.2f}" if values else "n/a"

        out.append(
            f"| {c} | {ratio(lambda w: w.run.rps)} | {ratio(lambda w: w.run.p99_ms)}"
            f" | {ratio(lambda w: w.lag_ms[1])}"
            f" | {ratio(lambda w: w.transactions / max(1, w.settled))}"
            f" | {ratio(lambda w: w.wal_bytes / max(1, w.redeemed))}"
            f" | {ratio(lambda w: w.pipeline_us)}"
            f" | {ratio(lambda w: w.cpu_us.get('postgres', math.nan))}"
            f" | {ratio(lambda w: w.cpu_us.get('worker', math.nan))}"
            f" | {ratio(lambda w: w.cpu_us.get('valkey', math.nan))} |"
        )
    return out


def targets(args: argparse.Namespace, cells: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    out = ["Targets for the whole system on 2 cores (this checkout):", ""]
    eight = cells.get(("this", 8))
    if eight is not None:
        ok = eight["p99"] <= TARGET_P99_MS and eight["lag99"] <= TARGET_LAG_P99_MS
        out.append(
            f"- p99 at 8 connections = {eight['p99']:.2f} ms (≤ {TARGET_P99_MS:g}) with settlement"
            f" lag p99 {eight['lag99']:.0f} ms (≤ {TARGET_LAG_P99_MS:.0f}): "
            + ("met" if ok else "MISSED")
        )
    for c in args.connections:
        cell = cells.get(("this", c))
        if cell is not None:
            verdict = "met" if cell["pipeline"] <= TARGET_CPU_US else "MISSED"
            out.append(
                f"- CPU per redemption at {c} connection(s), every process of the service:"
                f" {cell['pipeline']:.0f} µs (≤ {TARGET_CPU_US:.0f}): {verdict}"
            )
    return out
