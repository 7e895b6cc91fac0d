"""Settlement: how fast `qrloop worker` moves redemptions into the ledger, against the hot path.

    python benchmarks/settlement.py [--duration 6] [--workers 1 2] [--lag-duration 20]
                                    [--lag-rate R] [--no-write]

Serves what `qrloop api` serves (2 API processes, as benchmarks/redeem.py does) on the embedded
default stores (PostgreSQL, and Valkey with AOF and appendfsync always), or on --database-url
and --redis-url scratch servers. Every redemption goes through POST /v1/redeem with a distinct
valid code, so the stream entries are exactly those of the hot path. Then:

  throughput  wrk redeems for --duration s with no worker running (the hot path's rate: 2 API
              processes, 64 connections), which leaves a backlog of every redemption in the
              stream; then, for each --workers count, that many real `qrloop worker` processes
              start and are timed from their first acknowledgement to an empty backlog, and wrk
              redeems again (the next backlog). ratio = settled/s ÷ the mean redemption rate
              of the runs just before and after the drain (target ≥ 1: settlement keeps up).
  lag         one worker runs while wrk redeems for --lag-duration s, first as fast as it goes,
              then paced to --lag-rate redemptions/s (default: half what one worker settled per
              second); lag = when PostgreSQL took the row minus its redeemed_at, read back from
              the redemptions table (settled_at, and the start of the worker's next transaction
              as the bound on the commit).

Takes about 3 minutes. Writes the "## Settlement" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import redis
import redis.asyncio
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
    free_port,
    heading,
    say,
    seed,
    source_identity,
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

    def __init__(self, env: dict[str, str], count: int, workdir: Path) -> None:
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
        self.redis_url = env["REDIS_URL"]

    def pids(self) -> list[int]:
        import psutil

        assert self.proc is not None
        with contextlib.suppress(psutil.Error):
            return [p.pid for p in psutil.Process(self.proc.pid).children()]
        return []

    def ready(self) -> bool:
        """Every worker has read its streams once (each is then a consumer of the group)."""
        from qrloop import keyspace

        client = redis.Redis.from_url(self.redis_url)
        try:
            consumers = client.xinfo_consumers(keyspace.events(0), keyspace.SETTLEMENT_GROUP)
        except redis.ResponseError:
            return False
        finally:
            client.close()
        names = {c["name"].decode().rsplit("-", 1)[-1] for c in consumers}
        pids = {str(pid) for pid in self.pids()}
        return len(pids) == self.count and pids <= names


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

# Each worker transaction stamps its rows' settled_at with now(): the transaction's start.
_BATCHES = """
SELECT settled_at, count(*) AS n FROM redemptions
WHERE settled_at >= $1 GROUP BY settled_at ORDER BY settled_at
"""

# Lag per redemption of the window, from the table alone. settled_at is now() at the start of
# the worker's transaction (BEGIN); with one worker its next transaction begins only after this
# one committed and was acknowledged, so the next settled_at bounds the commit from above (the
# last transaction: `$3`, when the backlog was seen empty).
_LAGS = """
WITH tx AS (
    SELECT settled_at, lead(settled_at) OVER (ORDER BY settled_at) AS next_at
    FROM (SELECT DISTINCT settled_at FROM redemptions WHERE settled_at >= $2) s
), lags AS (
    SELECT extract(epoch FROM r.settled_at - r.redeemed_at) * 1000 AS begin_ms,
           extract(epoch FROM coalesce(tx.next_at, $3) - r.redeemed_at) * 1000 AS commit_ms,
           split_part(r.stream_entry, '-', 1)::bigint
             - extract(epoch FROM r.redeemed_at) * 1000 AS queued_ms
    FROM redemptions r JOIN tx USING (settled_at)
    WHERE r.redeemed_at >= $1
)
SELECT count(*) AS n,
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY begin_ms) AS begin_ms,
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY commit_ms) AS commit_ms,
       max(commit_ms) AS commit_max_ms,
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY queued_ms) AS queued_ms
FROM lags
"""


def counts(database_url: str) -> dict[str, int]:
    return {k: int(v) for k, v in dict(fetch(database_url, _COUNTS)[0]).items()}


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
    cycle_ms: float = math.nan  # median time between one transaction's start and the next's
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
    begin_ms: tuple[float, float] = (math.nan, math.nan)
    commit_ms: tuple[float, float] = (math.nan, math.nan)
    commit_max_ms: float = math.nan
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
        self.partitions = int(env.get("QRLOOP_PARTITIONS", "16"))
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
            with Workers(self.env, workers, self.workdir) as group:
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
        batches = fetch(self.stores.database_url, _BATCHES, since)
        if batches:
            round_.batch_median = statistics.median(b["n"] for b in batches)
            starts = [b["settled_at"] for b in batches]
            gaps = [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(starts)]
            round_.cycle_ms = statistics.median(gaps) if gaps else math.nan

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
                f"  {workers} worker(s): redeemed {round_.before_rps:.0f}/s before,"
                f" {round_.after_rps:.0f}/s after; settled {round_.backlog} in"
                f" {round_.drain_s:.1f}s = {round_.settle_rps:.0f}/s; ratio {round_.ratio:.2f}"
                + (f"  !! {'; '.join(round_.notes)}" if round_.notes else "")
            )
            before = after

    def lag_runs(self, fixture: Fixture) -> None:
        """One worker settles while wrk redeems: as fast as it goes, then at a steady rate."""
        rates = [0.0]
        one = [r.settle_rps for r in self.rounds if r.workers == 1 and r.settle_rps > 0]
        steady = self.args.lag_rate
        if steady is None and one:
            steady = round(one[0] / 2, -2)
        if steady:
            rates.append(steady)
        with (
            BacklogWatch(self.stores.redis_url, self.partitions) as watch,
            Workers(self.env, 1, self.workdir) as group,
        ):
            for rate in rates:
                self.wait_quiet()
                if watch.wait(1, DRAIN_TIMEOUT, after=time.monotonic()) is None:
                    raise RuntimeError("the backlog did not empty before the lag run")
                self.lags.append(self.lag_run(fixture, rate, watch, group.pids()))

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
        # The wall-clock moment of that sample, to compare with PostgreSQL's timestamps.
        empty_at = datetime.now(UTC) - timedelta(seconds=time.monotonic() - empty[0])
        row = fetch(self.stores.database_url, _LAGS, since, since, empty_at)[0]
        lag.n = int(row["n"])
        lag.begin_ms = tuple(row["begin_ms"])  # type: ignore[assignment]
        lag.commit_ms = tuple(row["commit_ms"])  # type: ignore[assignment]
        lag.commit_max_ms = float(row["commit_max_ms"])
        lag.queued_ms = tuple(row["queued_ms"])  # type: ignore[assignment]
        # Requests still in flight when wrk stops are served but not counted by wrk.
        if not 0 <= lag.n - lag.redeemed <= CONNECTIONS:
            lag.notes.append(f"{lag.n} rows settled for {lag.redeemed} redemptions wrk saw")
        say(
            f"  lag at {rps:.0f} redemptions/s: p50 {lag.commit_ms[0]:.0f} ms,"
            f" p99 {lag.commit_ms[1]:.0f} ms; backlog at most {lag.backlog_max}"
        )
        return lag

    def run(self) -> None:
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


def report(
    args: argparse.Namespace, bench: Settle, info: list[tuple[str, str]], problems: list[str]
) -> str:
    lines = heading(SECTION, "benchmarks/settlement.py")
    info = [(k, v) for k, v in info if k != "Served"]
    info.append(
        (
            "Served",
            f"`qrloop.cli.run_api` with {API_PROCESSES} API processes, as in the Redeem section;"
            " settlement by `python -m qrloop worker` processes (the real command)",
        )
    )
    lines += [f"- {name}: {value}" for name, value in info]
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
        " redemption stays behind in the stream); then the round's workers start and are timed"
        " from the first acknowledged entry to an empty backlog (the worker acknowledges after"
        " its transaction commits, so acknowledged = in PostgreSQL with its ledger postings);"
        " then wrk redeems again, which also leaves the next round's backlog. A round's ratio is"
        " its settled/s over the mean of the hot-path runs just before and after its drain, so"
        " a drift in the machine's other load weighs on both sides. Cores during the drain:"
        " CPU-seconds per second (2 = the whole machine).",
        "",
        "| workers | redeemed/s before / after (hot path) | backlog | settled/s"
        " | settled / redeemed (mean of before and after)"
        " | worker start → first commit s | drain s | redemptions per transaction (median)"
        " | transaction start to next start ms (median) | cores: " + " / ".join(PARTS) + " |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in bench.rounds:
        lines.append(
            f"| {r.workers} | {r.before_rps:.0f} / {r.after_rps:.0f} | {r.backlog}"
            f" | {r.settle_rps:.0f}"
            f" | {_fmt(r.ratio)} | {r.startup_s:.2f} | {r.drain_s:.2f} | {r.batch_median:.0f}"
            f" | {r.cycle_ms:.1f} | {_cores(r.cpu, PARTS)} |"
        )
    lines += ["", "Target: settled/s ÷ redeemed/s ≥ 1 (settlement keeps up with the tills):", ""]
    for r in bench.rounds:
        verdict = "met" if r.ratio >= 1 else "MISSED"
        lines.append(f"- {r.workers} worker(s): {_fmt(r.ratio)}: {verdict}")
    lines += ["", "CPU per redemption in µs (cores ÷ rate): where the time goes.", ""]
    for r in bench.rounds:
        hot = {part: r.redeem_cpu.get(part, math.nan) / r.redeem_rps * 1e6 for part in PARTS}
        settle = {part: r.cpu.get(part, math.nan) / r.settle_rps * 1e6 for part in PARTS}
        lines.append(
            f"- {r.workers} worker(s): settling took {settle['postgres']:.0f} µs of PostgreSQL"
            f" and {settle['worker']:.0f} µs of worker processes (+ {settle['valkey']:.0f} µs"
            f" of Valkey); redeeming took {hot['api']:.0f} µs of API processes and"
            f" {hot['valkey']:.0f} µs of Valkey."
        )
    if bench.lags:
        lines += [
            "",
            "### Lag under load",
            "",
            f"One worker runs while wrk redeems for {args.lag_duration:g} s: as fast as it goes"
            f" ({CONNECTIONS} connections), then paced to a steady rate (redeem.lua spaces each"
            " thread's requests evenly). After each run the script waits for the backlog to"
            " empty and reads every redemption of the run back from PostgreSQL. Lag = when the"
            " row was settled minus its `redeemed_at`. `redemptions.settled_at` is PostgreSQL's"
            " `now()`, the *start* of the worker's transaction: a lower bound on the commit. The"
            " upper bound (first column) is the start of the worker's next transaction, which"
            " with one worker begins only after the commit and the acknowledgement (for the"
            " last transaction: when the backlog was seen empty). `redeemed_at` is the API"
            " process's clock when it calls Valkey (ms); the stream entry's id is Valkey's"
            " clock at XADD.",
            "",
            "| load | redeemed/s | redemptions | lag p50 / p99 ms (commit, upper bound)"
            " | max ms | lag p50 / p99 ms (transaction start) | backlog max"
            " | backlog when wrk stopped | empty after s | redeem p99 ms (wrk)"
            " | cores: " + " / ".join(PARTS) + " |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for lag in bench.lags:
            load = f"paced to {lag.target_rps:.0f}/s" if lag.target_rps else "as fast as wrk goes"
            lines.append(
                f"| {load} | {lag.redeem_rps:.0f} | {lag.n} | {_pair(lag.commit_ms)}"
                f" | {lag.commit_max_ms:.0f} | {_pair(lag.begin_ms)} | {lag.backlog_max}"
                f" | {lag.backlog_end} | {lag.tail_s:.2f} | {lag.p99_ms:.1f}"
                f" | {_cores(lag.cpu, PARTS)} |"
            )
        queued = "; ".join(
            f"{lag.queued_ms[0]:.1f} / {lag.queued_ms[1]:.1f} ms" for lag in bench.lags
        )
        lines += ["", f"`redeemed_at` → stream entry id, p50 / p99, per run: {queued}."]
    problems = problems + [
        f"- {what}: {note}"
        for what, notes in [
            *((f"{r.workers} worker(s)", r.notes) for r in bench.rounds),
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
    what = ["warm-up", *(f"before the drain by {r.workers} worker(s)" for r in bench.rounds)]
    what += ["after the last drain"] if bench.rounds else []
    what += [
        "lag run, 1 worker settling"
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
        help="worker processes draining, one round each (1 2)",
    )
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up (3)")
    parser.add_argument(
        "--lag-duration",
        type=float,
        default=20,
        help="seconds of redemptions per lag run, while one worker settles (20; 0: no lag runs)",
    )
    parser.add_argument(
        "--lag-rate",
        type=float,
        help="redemptions/s of the steady lag run (default: half what one worker settled per"
        " second in the throughput round; 0: only the as-fast-as-it-goes lag run)",
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
