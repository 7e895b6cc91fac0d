"""Settlement: how fast `qrloop worker` moves redemptions into the ledger, against the hot path.

    python benchmarks/settlement.py [--duration 6] [--workers 1 2] [--lag-duration 20]
                                    [--lag-rate R] [--no-write]

Serves what `qrloop api` serves (2 API processes, as benchmarks/redeem.py does) on the embedded
default stores (PostgreSQL, and Valkey with AOF and appendfsync always), or on --database-url
and --redis-url scratch servers. Every redemption goes through POST /v1/redeem with a distinct
valid code, so the stream entries are exactly those of the hot path. A worker process runs
QRLOOP_SETTLEMENT_CONSUMERS consumers (the default), each with its own transaction in flight.
Then:

  throughput  wrk redeems for --duration s with no worker running (the hot path's rate: 2 API
              processes, 64 connections), which leaves a backlog of every redemption in the
              stream; then, for each --workers count, that many real `qrloop worker` processes
              start and are timed from their first acknowledgement to an empty backlog, and wrk
              redeems again (the next backlog). ratio = settled/s ÷ the mean redemption rate
              of the runs just before and after the drain (target ≥ 1: settlement keeps up).
  lag         one worker process runs while wrk redeems for --lag-duration s, first as fast as
              it goes, then paced to --lag-rate redemptions/s (default: half what one worker
              process settled per second, at most half the first lag run's rate); lag = the
              commit time of the row's transaction (pg_xact_commit_timestamp(xmin)) minus its
              redeemed_at, read back from the redemptions table. The embedded PostgreSQL is
              restarted with track_commit_timestamp = on for this; on a --database-url server
              that has it off, only settled_at (the transaction's start, a lower bound) is
              reported.

Takes about 3 minutes. Writes the "## Settlement" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis
import redis.asyncio
from ports import free_port
from redeem import (
    FIRST_GUESS_RPS,
    OTHERS_LIMIT,
    Bench,
    Fixture,
    Http,
    Server,
    Service,
    Stores,
    _cores,
    _fmt,
    bench_main,
    common_options,
    every_run,
    heading,
    say,
    seed,
    source_identity,
    sql,
)

SECTION = "## Settlement"
API_PROCESSES = 2
CONNECTIONS = 64
PLATFORM_FEE = 15  # minor units on a 500 face value: every posting books all four entries
POLL_SECONDS = 0.02
DRAIN_TIMEOUT = 90.0  # give up on a drain after this long (reported, not hidden)
PARTS = ("api", "worker", "valkey", "postgres", "wrk", "others")


# --------------------------------------------------------------------------- workers


class Workers(Service):
    """`qrloop worker` processes, the real command, in one process group of their own."""

    def __init__(self, env: dict[str, str], count: int, consumers: int, workdir: Path) -> None:
        # One leader starts `count` workers and waits: stopping its group stops them all.
        command = (
            "import subprocess, sys; "
            f"workers = [subprocess.Popen([sys.executable, '-m', 'qrloop', 'worker'])"
            f" for _ in range({count})]; "
            "[w.wait() for w in workers]"
        )
        super().__init__(
            [sys.executable, "-c", command],
            env,
            workdir / f"worker-{count}.log",
            f"{count} settlement worker(s)",
        )
        self.count = count
        self.consumers = consumers
        self.redis_url = env["REDIS_URL"]

    def pids(self) -> list[int]:
        import psutil

        assert self.proc is not None
        with contextlib.suppress(psutil.Error):
            return [p.pid for p in psutil.Process(self.proc.pid).children()]
        return []

    def ready(self) -> bool:
        """Every consumer of every worker has read its streams once (it is then a consumer of
        the group, named `{host}-{pid}-{n}`)."""
        from qrloop import keyspace

        client = redis.Redis.from_url(self.redis_url)
        try:
            consumers = client.xinfo_consumers(keyspace.events(0), keyspace.SETTLEMENT_GROUP)
        except redis.ResponseError:
            return False
        finally:
            client.close()
        owners = [c["name"].decode().rsplit("-", 2)[-2] for c in consumers]
        pids = {str(pid) for pid in self.pids()}
        return len(pids) == self.count and all(owners.count(p) == self.consumers for p in pids)


def backlog(redis_url: str, partitions: int) -> int:
    """Entries in the streams not yet acknowledged by the settlement group (worker's gauge)."""
    from qrloop.settlement.worker import settlement_gauges

    async def go() -> int:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return (await settlement_gauges(client, partitions))[0]
        finally:
            await client.aclose()

    return int(asyncio.run(go()))


class BacklogWatch:
    """Polls the backlog from a thread every POLL_SECONDS: (monotonic time, backlog) samples."""

    def __init__(self, redis_url: str, partitions: int) -> None:
        self.redis_url = redis_url
        self.partitions = partitions
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from qrloop.settlement.worker import settlement_gauges

        async def go() -> None:
            client = redis.asyncio.Redis.from_url(self.redis_url)
            try:
                while not self.stop.is_set():
                    value = (await settlement_gauges(client, self.partitions))[0]
                    self.samples.append((time.monotonic(), value))
                    await asyncio.sleep(POLL_SECONDS)
            finally:
                await client.aclose()

        asyncio.run(go())

    def __enter__(self) -> BacklogWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def first(self, below: int, after: float = 0.0) -> tuple[float, int] | None:
        """The first sample (time, backlog) after `after` with a backlog under `below`."""
        return next(((t, b) for t, b in list(self.samples) if t > after and b < below), None)

    def wait(self, below: int, timeout: float, after: float = 0.0) -> tuple[float, int] | None:
        """`first(below, after)`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while (found := self.first(below, after)) is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        return found


# --------------------------------------------------------------------------- PostgreSQL


async def _fetch(database_url: str, query: str, *params: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(query, *params))
    finally:
        await connection.close()


def fetch(database_url: str, query: str, *params: Any) -> list[asyncpg.Record]:
    return list(asyncio.run(_fetch(database_url, query, *params)))


_COUNTS = """
SELECT (SELECT count(*) FROM redemptions) AS redemptions,
       (SELECT count(*) FROM ledger_transactions) AS transactions,
       (SELECT count(*) FROM ledger_entries) AS entries
"""

# When a row's transaction committed: PostgreSQL's own stamp (pg_xact_commit_timestamp, taken as
# the commit record is written, before the WAL flush) when track_commit_timestamp is on (`$2`),
# else the start of that transaction: settled_at defaults to now(), the transaction's start.
_SETTLED = "CASE WHEN $2 THEN pg_xact_commit_timestamp(xmin) ELSE settled_at END"

# The worker transactions since `$1`: their start, commit (`_SETTLED`) and redemptions.
_BATCHES = f"""
SELECT min(settled_at) AS started_at, min({_SETTLED}) AS committed_at, count(*) AS n
FROM redemptions WHERE settled_at >= $1 GROUP BY xmin
"""

# Lag per redemption of the window, from the table alone.
_LAGS = f"""
WITH lags AS (
    SELECT extract(epoch FROM {_SETTLED} - redeemed_at) * 1000 AS lag_ms,
           split_part(stream_entry, '-', 1)::bigint
             - extract(epoch FROM redeemed_at) * 1000 AS queued_ms
    FROM redemptions WHERE redeemed_at >= $1
)
SELECT count(*) AS n,
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag_ms) AS lag_ms,
       max(lag_ms) AS lag_max_ms,
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY queued_ms) AS queued_ms
FROM lags
"""


def counts(database_url: str) -> dict[str, int]:
    return {k: int(v) for k, v in dict(fetch(database_url, _COUNTS)[0]).items()}


def track_commits(stores_: Stores) -> bool:
    """Whether PostgreSQL records when each transaction commits (track_commit_timestamp). The
    embedded PostgreSQL is this script's own: it is restarted with the setting on."""
    query = "SHOW track_commit_timestamp"
    if sql(stores_.database_url, query) != "on" and stores_.embedded is not None:
        say("restarting the embedded PostgreSQL with track_commit_timestamp = on")
        sql(stores_.database_url, "ALTER SYSTEM SET track_commit_timestamp = on")
        stores_.embedded.stop_postgres()
        stores_.embedded.start_postgres()
    return bool(sql(stores_.database_url, query) == "on")


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Round:
    workers: int
    before_rps: float  # the hot path's rate (wrk, no worker running) just before the drain
    backlog: int = 0  # entries waiting when the workers started
    after_rps: float = math.nan  # ... and just after it
    settle_rps: float = math.nan  # acknowledged (= committed) entries per second
    startup_s: float = math.nan  # worker start to first acknowledgement
    drain_s: float = math.nan  # first acknowledgement to empty backlog
    batch_median: float = math.nan  # redemptions per worker transaction
    transaction_ms: float | None = None  # median from a transaction's start to its commit
    in_flight: float | None = None  # worker transactions open at once, on average
    cpu: dict[str, float] = field(default_factory=dict)  # during the drain
    redeem_cpu: dict[str, float] = field(default_factory=dict)  # during the redeem runs
    notes: list[str] = field(default_factory=list)

    @property
    def redeem_rps(self) -> float:
        """The hot path's rate around the drain: the mean of the runs before and after it."""
        rates = [r for r in (self.before_rps, self.after_rps) if not math.isnan(r)]
        return statistics.mean(rates) if rates else math.nan

    @property
    def ratio(self) -> float:
        return self.settle_rps / self.redeem_rps if self.redeem_rps else math.nan


@dataclass
class Lag:
    target_rps: float | None
    redeem_rps: float
    redeemed: int
    n: int = 0
    lag_ms: tuple[float, float] = (math.nan, math.nan)  # p50, p99
    lag_max_ms: float = math.nan
    queued_ms: tuple[float, float] = (math.nan, math.nan)
    backlog_max: int = 0
    backlog_end: int = 0  # when wrk stopped
    tail_s: float = math.nan  # from wrk's end to an empty backlog
    p99_ms: float = math.nan  # wrk's redemption latency
    cpu: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Settle(Bench):
    def __init__(self, args: argparse.Namespace, env: dict[str, str], stores_: Stores) -> None:
        super().__init__(args, env, stores_)
        from qrloop.settings import load

        self.partitions = int(env.get("QRLOOP_PARTITIONS", "16"))
        self.consumers = load(env).settlement_consumers  # per worker process
        self.committed_at = False  # whether lag runs to the commit (else to the start)
        self.rounds: list[Round] = []
        self.warmup: Round | None = None
        self.lags: list[Lag] = []
        self.server: Server | None = None
        self.best = 0.0  # the fastest redemption rate seen (sizes the orders of codes)

    # ----- pieces

    def backlog(self) -> int:
        return backlog(self.stores.redis_url, self.partitions)

    def redeem(
        self,
        fixture: Fixture,
        seconds: float,
        rate: float = 0,
        **trees: list[int],
    ) -> tuple[dict[str, Any], float]:
        """wrk on /v1/redeem for `seconds` with fresh codes, as fast as it goes or paced to
        `rate`/s: (wrk's result, redemptions answered 200 per second)."""
        assert self.server is not None
        # Codes are cheap (a signed order): enough for the fastest rate seen, with a margin.
        rps = rate or max(self.best, FIRST_GUESS_RPS)
        codes = self.codes_for(Http(self.server.base_url), fixture, rps, seconds)
        result = self.measure(self.server, fixture, "a", CONNECTIONS, codes, seconds, rate, **trees)
        run = self.record(API_PROCESSES, CONNECTIONS, len(self.runs) + 1, "a", result)
        if run.notes:
            say(f"  !! {'; '.join(run.notes)}")
        ok_rps = (run.requests - run.non_2xx) / (result["duration_us"] / 1e6)
        if not rate:
            self.best = max(self.best, ok_rps)
        return result, ok_rps

    def drain(self, workers: int, round_: Round) -> None:
        """Start `workers` workers on the backlog; time them from first acknowledgement to empty."""
        self.wait_quiet()
        assert self.server is not None and self.server.proc is not None
        before = counts(self.stores.database_url)
        since = datetime.now(UTC)
        round_.backlog = self.backlog()
        with BacklogWatch(self.stores.redis_url, self.partitions) as watch:
            started = time.monotonic()
            with Workers(self.env, workers, self.consumers, self.workdir) as group:
                pids = group.pids()
                first = watch.wait(round_.backlog, DRAIN_TIMEOUT)
                cpu_start = self.meter.snapshot(self.server.proc.pid, worker=pids)
                end = watch.wait(1, DRAIN_TIMEOUT) if first else None
                cpu_end = self.meter.snapshot(self.server.proc.pid, worker=pids)
        if first is None or end is None:
            left = watch.samples[-1][1] if watch.samples else "?"
            round_.notes.append(f"not drained in {DRAIN_TIMEOUT:.0f}s ({left} entries left)")
            return
        round_.startup_s = first[0] - started
        round_.drain_s = end[0] - first[0]
        round_.settle_rps = first[1] / round_.drain_s
        round_.cpu = self.meter.cores(cpu_start, cpu_end)
        if round_.cpu.get("others", 0.0) > OTHERS_LIMIT:
            round_.notes.append(f"other processes used {round_.cpu['others']:.2f} cores meanwhile")
        after = counts(self.stores.database_url)
        settled = after["redemptions"] - before["redemptions"]
        if settled != round_.backlog:
            round_.notes.append(f"{settled} rows settled for a backlog of {round_.backlog}")
        if after["transactions"] != after["redemptions"]:
            round_.notes.append(
                f"{after['transactions']} ledger transactions for {after['redemptions']} rows"
            )
        if after["entries"] != 4 * after["transactions"]:
            round_.notes.append(
                f"{after['entries']} ledger entries for {after['transactions']} transactions"
            )
        batches = fetch(self.stores.database_url, _BATCHES, since, self.committed_at)
        if batches:
            round_.batch_median = statistics.median(b["n"] for b in batches)
        if batches and self.committed_at:
            spans = [(b["committed_at"] - b["started_at"]).total_seconds() for b in batches]
            opened = min(b["started_at"] for b in batches)
            wall = (max(b["committed_at"] for b in batches) - opened).total_seconds()
            round_.transaction_ms = statistics.median(spans) * 1000
            round_.in_flight = sum(spans) / wall if wall > 0 else None

    # ----- phases

    def throughput(self, fixture: Fixture) -> None:
        """Redeem, drain, redeem, drain, ..., redeem: each drain between two hot-path runs,
        whose mean is its round's redemption rate (the load of others drifts meanwhile); each
        run leaves the backlog the next drain settles."""
        say(f"warm-up: {self.args.warmup:g}s of redemptions, then one worker drains them")
        _, rps = self.redeem(fixture, self.args.warmup)
        self.warmup = Round(1, rps)
        self.drain(1, self.warmup)
        before = self.redeem(fixture, self.args.duration)
        for workers in self.args.workers:
            round_ = Round(workers, before[1])
            self.drain(workers, round_)
            after = self.redeem(fixture, self.args.duration)
            round_.after_rps = after[1]
            runs = (before[0]["cpu"], after[0]["cpu"])
            round_.redeem_cpu = {
                k: statistics.mean(cpu.get(k, math.nan) for cpu in runs) for k in PARTS
            }
            self.rounds.append(round_)
            say(
                f"  {workers} worker process(es): redeemed {round_.before_rps:.0f}/s before,"
                f" {round_.after_rps:.0f}/s after; settled {round_.backlog} in"
                f" {round_.drain_s:.1f}s = {round_.settle_rps:.0f}/s; ratio {round_.ratio:.2f}"
                + (f"  !! {'; '.join(round_.notes)}" if round_.notes else "")
            )
            before = after

    def lag_runs(self, fixture: Fixture) -> None:
        """One worker process settles while wrk redeems: as fast as it goes, then at a steady
        rate."""
        with (
            BacklogWatch(self.stores.redis_url, self.partitions) as watch,
            Workers(self.env, 1, self.consumers, self.workdir) as group,
        ):
            for paced in (False, True):
                rate = self.steady_rate() if paced else 0.0
                if paced and not rate:
                    break
                self.wait_quiet()
                if watch.wait(1, DRAIN_TIMEOUT, after=time.monotonic()) is None:
                    raise RuntimeError("the backlog did not empty before the lag run")
                self.lags.append(self.lag_run(fixture, rate, watch, group.pids()))

    def steady_rate(self) -> float:
        """--lag-rate; by default half what one worker process settled per second, and at most
        half what wrk redeemed as fast as it went while that worker settled (the two share the
        machine): a steady load with room to spare. 0: no paced run."""
        if self.args.lag_rate is not None:
            return float(self.args.lag_rate)
        one = [r.settle_rps for r in self.rounds if r.workers == 1 and r.settle_rps > 0]
        shared = [lag.redeem_rps for lag in self.lags if lag.target_rps is None]
        return round(min(one[:1] + shared) / 2, -2) if one else 0.0

    def lag_run(self, fixture: Fixture, rate: float, watch: BacklogWatch, pids: list[int]) -> Lag:
        since = datetime.now(UTC)
        result, rps = self.redeem(fixture, self.args.lag_duration, rate, worker=pids)
        wrk_end = time.monotonic()
        wrk_start = wrk_end - result["duration_us"] / 1e6
        during = [b for t, b in list(watch.samples) if wrk_start <= t <= wrk_end]
        lag = Lag(rate or None, rps, result["requests"] - result["non_2xx"])
        lag.p99_ms = result["p99_us"] / 1000
        lag.cpu = result["cpu"]
        lag.backlog_max = max(during, default=0)
        lag.backlog_end = during[-1] if during else 0
        empty = watch.wait(1, DRAIN_TIMEOUT, after=wrk_end)
        if empty is None:
            lag.notes.append(f"the backlog did not empty within {DRAIN_TIMEOUT:.0f}s of the run")
            return lag
        lag.tail_s = empty[0] - wrk_end
        row = fetch(self.stores.database_url, _LAGS, since, self.committed_at)[0]
        lag.n = int(row["n"])
        lag.lag_ms = tuple(row["lag_ms"])
        lag.lag_max_ms = float(row["lag_max_ms"])
        lag.queued_ms = tuple(row["queued_ms"])
        # Requests still in flight when wrk stops are served but not counted by wrk.
        if not 0 <= lag.n - lag.redeemed <= CONNECTIONS:
            lag.notes.append(f"{lag.n} rows settled for {lag.redeemed} redemptions wrk saw")
        say(
            f"  lag at {rps:.0f} redemptions/s: p50 {lag.lag_ms[0]:.0f} ms,"
            f" p99 {lag.lag_ms[1]:.0f} ms; backlog at most {lag.backlog_max}"
        )
        return lag

    def run(self) -> None:
        # Before anything connects: on the embedded stores this restarts PostgreSQL.
        self.committed_at = track_commits(self.stores)
        ensure_groups(self.stores, self.partitions)
        env = {**self.env, "QRLOOP_PORT": str(free_port())}
        self.code.append(("at the start", source_identity()))
        with Server(env, API_PROCESSES, self.workdir) as server:
            self.server = server
            fixture = seed(Http(server.base_url), env, self.workdir, platform_fee=PLATFORM_FEE)
            self.throughput(fixture)
            if self.args.lag_duration > 0:
                self.lag_runs(fixture)
        self.code.append(("at the end", source_identity()))


# --------------------------------------------------------------------------- reporting


def _pair(values: tuple[float, float]) -> str:
    return f"{values[0]:.0f} / {values[1]:.0f}"


def _served(bench: Settle, info: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The machine lines, with what this benchmark serves and how PostgreSQL times commits."""
    tracking = f"track_commit_timestamp {'on' if bench.committed_at else 'off'}"
    if bench.committed_at and bench.stores.embedded is not None:
        tracking += " (turned on by this benchmark, for the lag; `qrloop serve` leaves it off)"
    info = [(k, f"{v}, {tracking}" if k == "PostgreSQL" else v) for k, v in info if k != "Served"]
    served = (
        f"`qrloop.cli.processes.run_api` with {API_PROCESSES} API processes, as in the Redeem"
        " section; settlement by `python -m qrloop worker` processes (the real command), each"
        f" running {bench.consumers} consumers (QRLOOP_SETTLEMENT_CONSUMERS={bench.consumers}, the"
        " default) with one transaction in flight apiece"
    )
    return [*info, ("Served", served)]


def _lag_section(args: argparse.Namespace, bench: Settle) -> list[str]:
    if bench.committed_at:
        lag = (
            "Lag = the commit time of the row's transaction minus its `redeemed_at`: PostgreSQL"
            " records when each transaction commits (`track_commit_timestamp`, read back with"
            " `pg_xact_commit_timestamp(xmin)`), stamped as it writes the commit record, just"
            " before the WAL flush that makes the row durable."
        )
        column = "lag p50 / p99 ms (to commit)"
    else:
        lag = (
            "This PostgreSQL does not record commit times (`track_commit_timestamp` is off), so"
            " lag is measured only to the *start* of the row's transaction (`settled_at`,"
            " PostgreSQL's `now()`) from its `redeemed_at`: a lower bound on the lag to the"
            " commit, by however long the transaction took."
        )
        column = "lag p50 / p99 ms (to transaction start: a lower bound)"
    lines = [
        "",
        "### Lag under load",
        "",
        f"One worker process ({bench.consumers} consumers) runs while wrk redeems for"
        f" {args.lag_duration:g} s: as fast as it goes ({CONNECTIONS} connections), then paced"
        " to a steady rate (redeem.lua spaces each thread's requests evenly; unless --lag-rate"
        " says, half what one worker process settled per second in the throughput round, at"
        " most half the first run's rate, so the two share the machine with room to spare)."
        " After each run the script waits for the backlog to empty and reads every redemption"
        f" of the run back from PostgreSQL. {lag} `redeemed_at` is the API process's clock when"
        " it calls Valkey (ms); the stream entry's id is Valkey's clock at XADD.",
        "",
        f"| load | redeemed/s | redemptions | {column} | max ms | backlog max"
        " | backlog when wrk stopped | empty after s | redeem p99 ms (wrk)"
        " | cores: " + " / ".join(PARTS) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in bench.lags:
        load = f"paced to {run.target_rps:.0f}/s" if run.target_rps else "as fast as wrk goes"
        lines.append(
            f"| {load} | {run.redeem_rps:.0f} | {run.n} | {_pair(run.lag_ms)}"
            f" | {run.lag_max_ms:.0f} | {run.backlog_max} | {run.backlog_end}"
            f" | {run.tail_s:.2f} | {run.p99_ms:.1f} | {_cores(run.cpu, PARTS)} |"
        )
    queued = "; ".join(f"{run.queued_ms[0]:.1f} / {run.queued_ms[1]:.1f} ms" for run in bench.lags)
    return [*lines, "", f"`redeemed_at` → stream entry id, p50 / p99, per run: {queued}."]


def report(
    args: argparse.Namespace, bench: Settle, info: list[tuple[str, str]], problems: list[str]
) -> str:
    lines = heading(SECTION, "benchmarks/settlement.py")
    lines += [f"- {name}: {value}" for name, value in _served(bench, info)]
    in_flight = (
        " From the redemptions table: the redemptions per worker transaction, the time from a"
        " transaction's start (`settled_at`) to its commit, and the transactions open at once"
        " (those times summed over the time from the first start to the last commit; at most"
        " worker processes times consumers)."
        if bench.committed_at
        else " From the redemptions table: the redemptions per worker transaction (commit times"
        " are not recorded here, so the transaction columns are n/a)."
    )
    lines += [
        "",
        "Every redemption is a distinct valid code redeemed through `POST /v1/redeem`"
        f" (wrk -t2 -c{CONNECTIONS}), so the stream entries are the hot path's own. One campaign"
        f" (face value 500, platform fee {PLATFORM_FEE}: each redemption books a ledger"
        " transaction of four entries); its codes all live in one partition, so one stream"
        " carries the whole load, as in a single-campaign rush.",
        "",
        "### Throughput",
        "",
        f"wrk redeems for {args.duration:g} s with no worker running (the hot path's rate; every"
        " redemption stays behind in the stream); then the round's worker processes start"
        f" ({bench.consumers} consumers each) and are timed from the first acknowledged entry to"
        " an empty backlog (a consumer acknowledges after its transaction commits, so"
        " acknowledged = in PostgreSQL with its ledger postings); then wrk redeems again, which"
        " also leaves the next round's backlog. A round's ratio is its settled/s over the mean"
        " of the hot-path runs just before and after its drain, so a drift in the machine's"
        " other load weighs on both sides. Cores during the drain: CPU-seconds per second"
        f" (2 = the whole machine).{in_flight}",
        "",
        f"| worker processes ({bench.consumers} consumers each) | redeemed/s before / after"
        " (hot path) | backlog | settled/s | settled / redeemed (mean of before and after)"
        " | worker start → first commit s | drain s | redemptions per transaction (median)"
        " | transaction start → commit ms (median) | transactions open at once (mean)"
        " | cores: " + " / ".join(PARTS) + " |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in bench.rounds:
        lines.append(
            f"| {r.workers} | {r.before_rps:.0f} / {r.after_rps:.0f} | {r.backlog}"
            f" | {r.settle_rps:.0f}"
            f" | {_fmt(r.ratio)} | {r.startup_s:.2f} | {r.drain_s:.2f} | {r.batch_median:.0f}"
            f" | {_fmt(r.transaction_ms, 1)} | {_fmt(r.in_flight)} | {_cores(r.cpu, PARTS)} |"
        )
    lines += ["", "Target: settled/s ÷ redeemed/s ≥ 1 (settlement keeps up with the tills):", ""]
    for r in bench.rounds:
        verdict = "met" if r.ratio >= 1 else "MISSED"
        lines.append(f"- {r.workers} worker process(es): {_fmt(r.ratio)}: {verdict}")
    lines += ["", "CPU per redemption in µs (cores ÷ rate): where the time goes.", ""]
    for r in bench.rounds:
        hot = {part: r.redeem_cpu.get(part, math.nan) / r.redeem_rps * 1e6 for part in PARTS}
        settle = {part: r.cpu.get(part, math.nan) / r.settle_rps * 1e6 for part in PARTS}
        lines.append(
            f"- {r.workers} worker process(es): settling took {settle['postgres']:.0f} µs of"
            f" PostgreSQL and {settle['worker']:.0f} µs of worker processes"
            f" (+ {settle['valkey']:.0f} µs of Valkey); redeeming took {hot['api']:.0f} µs of"
            f" API processes and {hot['valkey']:.0f} µs of Valkey."
        )
    if bench.lags:
        lines += _lag_section(args, bench)
    problems = problems + [
        f"- {what}: {note}"
        for what, notes in [
            *((f"{r.workers} worker process(es)", r.notes) for r in bench.rounds),
            *([("warm-up", bench.warmup.notes)] if bench.warmup else []),
            *((f"lag run {n}", lag.notes) for n, lag in enumerate(bench.lags, 1)),
            *((f"wrk run {r.round}", r.notes) for r in bench.runs),
        ]
        for note in notes
    ]
    lines += [
        "",
        "Problems seen:"
        if problems
        else "Problems seen: none (no non-2xx, no socket errors,"
        " every redemption settled once with one balanced four-entry ledger transaction).",
        *problems,
    ]
    what = ["warm-up"]
    what += [f"before the drain by {r.workers} worker process(es)" for r in bench.rounds]
    what += ["after the last drain"] if bench.rounds else []
    what += [
        "lag run, 1 worker process settling"
        + (f", paced to {lag.target_rps:.0f}/s" if lag.target_rps else "")
        for lag in bench.lags
    ]
    lines += every_run(
        bench.runs,
        ("| run | what", "|---:|---"),
        lambda r: f"| {r.round} | {what[r.round - 1] if r.round <= len(what) else '?'}",
        PARTS,
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=6, help="seconds per hot-path run (6)")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="worker processes draining, one round each (1 2); each runs"
        " QRLOOP_SETTLEMENT_CONSUMERS consumers (default 2)",
    )
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up (3)")
    parser.add_argument(
        "--lag-duration",
        type=float,
        default=20,
        help="seconds of redemptions per lag run, while one worker process settles"
        " (20; 0: no lag runs)",
    )
    parser.add_argument(
        "--lag-rate",
        type=float,
        help="redemptions/s of the steady lag run (default: half what one worker process"
        " settled per second in the throughput round, at most half the rate of the"
        " as-fast-as-it-goes lag run; 0: only the as-fast-as-it-goes lag run)",
    )
    common_options(parser, quiet_wait=3)
    return parser.parse_args(argv)


def ensure_groups(stores_: Stores, partitions: int) -> None:
    """The settlement group on every stream before the first redemption, as a worker makes
    it, so the backlog can be counted before any worker has run."""
    from qrloop.settlement.worker import Worker

    async def go() -> None:
        client = redis.asyncio.Redis.from_url(stores_.redis_url)
        try:
            await Worker(None, client, partitions).ensure_groups()  # type: ignore[arg-type]
        finally:
            await client.aclose()

    asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    return bench_main(
        args, SECTION, Settle, lambda bench, info, problems: report(args, bench, info, problems)
    )


if __name__ == "__main__":
    sys.exit(main())
