"""The redemption lists on 1 M redemptions: the plan of each list query, and the memory of an
API process streaming months of them as CSV.

    .venv/bin/python benchmarks/redemption_lists.py [--rows 1000000] [--no-write]

On the embedded default stores (a temporary folder), or on --database-url and --redis-url
scratch servers (the script adds databases `lists_plans` and `lists_csv` there and drops them):

  plans   100 merchants and `--rows` redemptions written with generate_series
          (tests/history_rows.py), ANALYZEd; then EXPLAIN ANALYZE of each list a merchant can
          ask for (the merchant issuing about 5 % of the rows), as a JSON page (limit 101) and
          as the whole CSV (no limit): which index reads `redemptions`, rows, time.
  memory  one merchant holding all `--rows` redemptions; `qrloop serve` with one API process
          (no worker) on that database; GET /v1/redemptions?format=csv for the last tenth of
          the history, then for all of it, each in a fresh API process: its RSS before and at
          its peak (sampled every 100 ms), rows, bytes, seconds.

Takes about 10 minutes with 1 M rows. Writes the "## Redemption lists" section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import order
import psutil
import redis.asyncio
from machine import describe
from ports import free_port
from results import publish

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from history_rows import list_queries, load, scans_of  # noqa: E402
from qrloop import db  # noqa: E402
from qrloop.accounts import api_keys  # noqa: E402
from qrloop.embedded import EmbeddedServers  # noqa: E402
from qrloop.history import queries  # noqa: E402
from qrloop.settings import load as load_settings  # noqa: E402
from qrloop.settlement.state import ensure_epochs  # noqa: E402

SECTION = "## Redemption lists"
PAGE = 101  # what a default page of 100 asks PostgreSQL for


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextlib.contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """A fresh, migrated database on the server, dropped afterwards."""

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = _database(server_url, name)
    asyncio.run(db.migrate(url, progress=lambda _: None))
    try:
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _loaded(url: str, rows: int, merchants: int) -> Any:
    connection = await asyncpg.connect(url, command_timeout=3600)
    try:
        started = time.monotonic()
        loaded = await load(connection, rows, merchants)
        say(f"loaded {rows:,} redemptions in {time.monotonic() - started:.0f} s")
        return loaded
    finally:
        await connection.close()


# --------------------------------------------------------------------------- plans


@dataclass
class Plan:
    name: str
    shape: str  # "page" or "csv"
    scans: list[tuple[str, str | None]]
    rows: int
    ms: float
    text: str


async def month_parents(connection: asyncpg.Connection) -> dict[str, str]:
    """Each month's table or index of `redemptions`, and the parent it belongs to."""
    return {
        row["child"]: row["parent"]
        for row in await connection.fetch(
            "SELECT c.relname AS child, p.relname AS parent FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE p.relname LIKE 'redemptions%'"
        )
    }


async def _plans(url: str, rows: int) -> tuple[list[Plan], dict[str, str]]:
    loaded = await _loaded(url, rows, merchants=100)
    connection = await asyncpg.connect(url, command_timeout=600)
    plans = []
    try:
        for name, (filters, after) in list_queries(loaded).items():
            for shape, limit in (("page", PAGE), ("csv", None)):
                statement, args = queries.listing(filters, after, limit)
                explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement
                await connection.fetchval(explain, *args)  # warm the cache: the next is timed
                plan = json.loads(await connection.fetchval(explain, *args))
                text = await connection.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + statement, *args)
                plans.append(
                    Plan(
                        name,
                        shape,
                        [(scan.kind, scan.index) for scan in scans_of(plan)],
                        int(plan[0]["Plan"]["Actual Rows"]),
                        plan[0]["Execution Time"],
                        "\n".join(row[0] for row in text),
                    )
                )
                say(f"{name} ({shape}): {plans[-1].scans} {plans[-1].ms:.1f} ms")
        # Each month's table and indexes belong to the table and indexes of migrations 001,
        # 012 and 013: sizes and scans are told by those names, months summed and counted.
        parents = await month_parents(connection)
        sizes = {
            row["name"]: row["size"]
            for row in await connection.fetch(
                "SELECT c.relname AS name, pg_size_pretty(("
                "   SELECT sum(pg_relation_size(t.relid)) FROM pg_partition_tree(c.oid) t"
                " )) AS size"
                " FROM pg_class c WHERE c.relname LIKE 'redemptions%' AND c.relispartition = false"
                " AND c.relkind IN ('r', 'p', 'i', 'I') ORDER BY c.relname"
            )
        }
        for plan in plans:
            plan.scans = [(kind, parents.get(str(index), index)) for kind, index in plan.scans]
    finally:
        await connection.close()
    return plans, sizes


def _scan_cell(scans: list[tuple[str, str | None]]) -> str:
    """Each kind of scan once, with the number of months it read that way."""
    months = Counter(scans)
    return "; ".join(
        (f"{kind} `{index}`" if index else f"**{kind}**")
        + (f" ({months[kind, index]} months)" if months[kind, index] > 1 else "")
        for kind, index in months
    )


def plans_section(plans: list[Plan], sizes: dict[str, str], rows: int) -> list[str]:
    lines = [
        "### Plans",
        "",
        f"{rows:,} redemptions of 100 merchants over 180 days (tests/history_rows.py); the"
        " merchant asking issues 50 of the 1,040 campaigns (about 5 % of the rows) and accepts"
        " about as many at its stores, a tenth of them other merchants' codes. Each list as"
        f" its first JSON page (LIMIT {PAGE}) and as the whole CSV (no LIMIT), EXPLAIN ANALYZE"
        " after one warm-up run.",
        "",
        "| list | as | reads `redemptions` by | rows | ms |",
        "|---|---|---|---:|---:|",
    ]
    lines += [
        f"| {p.name} | {p.shape} | {_scan_cell(p.scans)} | {p.rows:,} | {p.ms:.1f} |" for p in plans
    ]
    sequential = [p for p in plans if any(kind == "Seq Scan" for kind, _ in p.scans)]
    pages = [p for p in plans if p.shape == "page"]
    lines += [
        "",
        f"Pages that read `redemptions` sequentially: "
        f"{sum(p in sequential for p in pages)} of {len(pages)};"
        f" whole CSVs: {sum(p.shape == 'csv' for p in sequential)}"
        f" of {len(plans) - len(pages)}.",
        "",
        "Sizes: " + ", ".join(f"`{name}` {size}" for name, size in sizes.items()) + ".",
        "",
    ]
    # The one plan with every part in it; the script prints them all.
    [both] = [p for p in plans if (p.name, p.shape) == ("both sides", "page")]
    lines += [
        "<details><summary>The plan of the first page of both sides</summary>",
        "",
        "```",
        both.text,
        "```",
        "",
        "</details>",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- memory


@dataclass
class Stream:
    label: str
    rows: int
    bytes: int
    seconds: float
    rss_before: int
    rss_peak: int


@contextlib.contextmanager
def serving(env: dict[str, str], workdir: Path) -> Iterator[tuple[str, int]]:
    """`qrloop serve` with one API process and no worker: its URL and its API process's pid."""
    base_url = f"http://127.0.0.1:{env['QRLOOP_PORT']}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "qrloop", "serve"], env=env, cwd=workdir, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not _ready(base_url):
            if serve.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("qrloop serve did not become ready")
            time.sleep(0.1)
        api = next(
            child for child in psutil.Process(serve.pid).children()
            if child.cmdline()[-1:] == ["api"]
        )  # fmt: skip
        yield base_url, api.pid
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)


def _ready(base_url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(base_url + "/health/ready", timeout=1).status_code == 200
    return False


def stream_csv(base_url: str, pid: int, api_key: str, label: str, **params: str) -> Stream:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=3600) as client:
        # A CSV of nothing yet (no redemption is this new): the route's code is loaded.
        empty = {"format": "csv", "since": datetime.now(UTC).isoformat()}
        warm = client.get("/v1/redemptions", params=empty)
        assert warm.status_code == 200, warm.text
        time.sleep(1)  # let the warm-up's garbage go before the baseline
        memory = order.PeakMemory(pid)
        rss_before = memory.root.memory_info().rss
        memory.start()
        lines = size = 0
        started = time.monotonic()
        try:
            with client.stream("GET", "/v1/redemptions", params={"format": "csv", **params}) as r:
                assert r.status_code == 200, r.read()
                for chunk in r.iter_bytes():
                    lines += chunk.count(b"\n")
                    size += len(chunk)
        finally:
            memory.done.set()
            memory.join()
    seconds = time.monotonic() - started
    # A stream shorter than the sampling interval has its samples at its two ends.
    peak = max(memory.peak, rss_before, memory.root.memory_info().rss)
    say(f"{label}: {lines - 1:,} rows in {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB")
    return Stream(label, lines - 1, size, seconds, rss_before, peak)


async def _state_ready(database_url: str, redis_url: str) -> None:
    """Mark the code state intact while the database is empty, as a first `serve` would: the
    rows written next are then history, not a lost state that `serve` rebuilds bit by bit."""
    pool = await db.create_pool(database_url, 1)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await ensure_epochs(pool, client, load_settings().partitions)
    finally:
        await client.aclose()
        await pool.close()


def memory_runs(env: dict[str, str], workdir: Path, url: str, rows: int) -> list[Stream]:
    asyncio.run(_state_ready(url, env["REDIS_URL"]))
    merchant = asyncio.run(_loaded(url, rows, merchants=1)).merchant_id

    async def key() -> str:
        connection = await asyncpg.connect(url)
        try:
            return (await api_keys.create(connection, merchant, "benchmark")).api_key
        finally:
            await connection.close()

    api_key = asyncio.run(key())
    env = {**env, "DATABASE_URL": url}
    # The rows are spread evenly over 180 days: the last 18 hold a tenth of them.
    tenth = (datetime.now(UTC) - timedelta(days=18)).isoformat()
    runs = []
    for label, params in (("the last 18 days", {"since": tenth}), ("all 180 days", {})):
        with serving(env, workdir) as (base_url, pid):
            runs.append(stream_csv(base_url, pid, api_key, label, **params))
    return runs


def memory_section(runs: list[Stream]) -> list[str]:
    lines = [
        "### Streaming CSV",
        "",
        "One merchant holding every redemption; `qrloop serve` with one API process and no"
        " worker; GET /v1/redemptions?format=csv, each size in a fresh API process after one"
        " warm-up request. RSS of the API process, sampled every 100 ms.",
        "",
        "| history | rows | MiB sent | seconds | rows/s | API RSS before | API RSS peak | growth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        growth = (run.rss_peak - run.rss_before) / 2**20
        lines.append(
            f"| {run.label} | {run.rows:,} | {run.bytes / 2**20:.0f} | {run.seconds:.1f}"
            f" | {run.rows / run.seconds:,.0f} | {run.rss_before / 2**20:.0f} MiB"
            f" | {run.rss_peak / 2**20:.0f} MiB | {growth:+.0f} MiB |"
        )
    small, large = runs
    growth = (large.rss_peak - large.rss_before) - (small.rss_peak - small.rss_before)
    lines += [
        "",
        f"Ten times the rows cost the API process {growth / 2**20:+.1f} MiB more at its peak:"
        f" memory stays the same however long the history (the server-side cursor hands over"
        f" {2000:,} rows at a time).",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- main


def machine(database_url: str) -> list[str]:
    async def version() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    return describe(f"PostgreSQL: {asyncio.run(version())}, default settings (work_mem 4 MB)")


def run(
    args: argparse.Namespace, database_url: str, redis_url: str, workdir: Path
) -> tuple[str, list[Plan]]:
    """The section for RESULTS.md, and every plan."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QRLOOP_")},
        "REDIS_URL": redis_url,
        "QRLOOP_PORT": str(free_port()),
        "QRLOOP_KEYS_DIR": str(workdir / "keys"),
        "QRLOOP_DATA_DIR": str(workdir / ".qrloop"),
        "QRLOOP_RUN_WORKER": "false",
        "QRLOOP_API_PROCESSES": "1",
        "QRLOOP_LOG_LEVEL": "warning",
    }
    with scratch_database(database_url, "lists_plans") as url:
        plans, sizes = asyncio.run(_plans(url, args.rows))
    with scratch_database(database_url, "lists_csv") as url:
        runs = memory_runs(env, workdir, url, args.rows)
    command = "`.venv/bin/python benchmarks/redemption_lists.py"
    command += f" --rows {args.rows}`" if args.rows != 1_000_000 else "`"
    section = "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with {command}.",
            "",
            *machine(database_url),
            "",
            *plans_section(plans, sizes, args.rows),
            *memory_section(runs),
        ]
    )
    return section, plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="a scratch PostgreSQL server (with --redis-url)")
    parser.add_argument("--redis-url", help="a scratch Redis")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="qrloop-bench-lists-"))
    try:
        if args.database_url and args.redis_url:
            section, plans = run(args, args.database_url, args.redis_url, workdir)
        else:
            with EmbeddedServers(workdir / "stores") as urls:
                section, plans = run(args, urls.database_url, urls.redis_url, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for plan in plans:
        print(f"\n{plan.name}, {plan.shape}:\n{plan.text}")
    publish(SECTION, section, write=not args.no_write)


if __name__ == "__main__":
    main()
