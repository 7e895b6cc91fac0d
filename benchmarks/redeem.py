"""Redemption throughput and latency: qrloop vs a no-op endpoint vs PostgreSQL-only.

    python benchmarks/redeem.py [--duration 10] [--rounds 2] [--processes 1 2]
                                [--connections 64 8] [--quick]

Serves what `qrloop api` serves (`qrloop.cli.processes.run_api` and its default app factory:
uvicorn, uvloop, httptools, QRLOOP_API_PROCESSES processes) with two extra routes on the same
Litestar app (benchmarks/bench_app.py), and loads it with wrk (benchmarks/redeem.lua), every
request carrying a distinct valid code. For each number of API processes and each number of
connections it alternates the variants a, b, c, a, b, c, ...

  (a) POST /v1/redeem          qrloop: verify, rules, one Lua call in Redis (AOF, fsync always)
  (b) POST /bench/noop         same body decoded, nothing done: the framework's own floor
  (c) POST /bench/pg-redeem    same auth and verify, then one UPDATE ... RETURNING in PostgreSQL

and writes the medians and the ratios (a)/(b), (a)/(c), computed round by round, into the
"## Redeem" section of benchmarks/RESULTS.md. The stores are the embedded default (a fresh
PostgreSQL and Valkey in a temporary folder under /tmp) unless --database-url and
--redis-url name scratch servers (the benchmark writes to them and never flushes them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import ctypes
import hashlib
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Self

import asyncpg
import redis
from ports import free_port
from results import RESULTS, write_section

if TYPE_CHECKING:
    from qrloop.embedded import EmbeddedServers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "redeem.lua"
SECTION = "## Redeem"

VARIANTS = {
    "a": ("/v1/redeem", "qrloop /v1/redeem"),
    "b": ("/bench/noop", "no-op JSON POST"),
    "c": ("/bench/pg-redeem", "PostgreSQL-only UPDATE ... RETURNING"),
}
CONSUMING = ("a", "c")  # variants whose every request must consume a fresh code
TERMINALS = 4
SIZE_MARGIN = 1.5  # codes prepared per run: best rate seen x duration x margin
FIRST_GUESS_RPS = 12_000  # before any rate is known (warm-up sizing)
BUSY_LIMIT = 0.15  # CPU share in use before a run above which it waits (--quiet-wait)
OTHERS_LIMIT = 0.1  # cores used by other processes during a run above which it is flagged
_PR_SET_PDEATHSIG = 1

# The API as `qrloop api` runs it, plus a `qrloop signer` in the same process group (orders
# are signed in the background; the signer idles while requests are measured).
SERVE = (
    "import subprocess, sys; "
    "subprocess.Popen([sys.executable, '-m', 'qrloop', 'signer']); "
    "from qrloop.cli.processes import run_api; from qrloop.settings import load; "
    "run_api(load(), factory='bench_app:create')"
)


# --------------------------------------------------------------------------- small helpers


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def _die_with_parent() -> None:
    """In a child: SIGTERM when this script dies, even by SIGKILL (Linux only)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _raise_on_sigterm(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def busy(seconds: float = 0.5) -> float:
    """Share of all CPUs in use over `seconds` (before a run, by anyone: nothing of ours runs)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return float("nan")
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


CPU_PARTS = ("api", "valkey", "postgres", "wrk", "others")


class CpuMeter:
    """Where the CPU went during a run, in cores (CPU-seconds per second).

    api: the API server's process group; valkey: the embedded Valkey; postgres: the embedded
    PostgreSQL's process tree; wrk: this script's reaped children (wrk) and itself; any
    process trees named in `snapshot(..., name=[pids])` (e.g. settlement workers); others:
    everything else the machine did (other people's work, kernel threads such as journal
    commits). With external stores their servers' CPU counts as others.
    """

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _postgres_pid(self) -> int | None:
        if self.data_dir is None:
            return None
        with contextlib.suppress(OSError, ValueError, KeyError):
            return int(json.loads((self.data_dir / "embedded.json").read_text())["postgres_pid"])
        return None

    def _parts(self, server_pid: int, trees: dict[str, list[int]]) -> dict[str, float]:
        import psutil  # a dependency of qrloop.embedded

        def tree(pids: list[int]) -> list[Any]:
            procs: dict[int, Any] = {}
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(pid)
                    procs |= {p.pid: p for p in [root, *root.children(recursive=True)]}
            return list(procs.values())

        def used(procs: list[Any]) -> float:
            """CPU of live processes, and of their children that exited and were waited for
            (PostgreSQL's short-lived backends, Valkey's AOF rewrite child, ...)."""
            total = 0.0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
            return total

        me = psutil.Process()
        mine = me.cpu_times()
        parts = {"wrk": mine.user + mine.system + mine.children_user + mine.children_system}
        api = tree([server_pid])
        api_pids = {proc.pid for proc in api}
        parts["api"] = used(api)
        for name, pids in trees.items():
            parts[name] = used(tree(pids))
        valkeys = [
            p.pid
            for p in me.children(recursive=True)
            if p.pid not in api_pids and p.name() == "valkey-server"
        ]
        parts["valkey"] = used(tree(valkeys))
        pg = self._postgres_pid()
        parts["postgres"] = used(tree([pg] if pg is not None else []))
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        parts["busy"] = (sum(fields) - fields[3] - fields[4]) / self.ticks
        parts["t"] = time.monotonic()
        return parts

    def snapshot(self, server_pid: int, **trees: list[int]) -> dict[str, float]:
        """CPU times so far; `trees` names more process trees (our children) to count apart."""
        try:
            return self._parts(server_pid, trees)
        except Exception:  # never let accounting break a benchmark
            return {"t": time.monotonic()}

    @staticmethod
    def cores(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
        """Cores used by each part between two snapshots (nan when unknown)."""
        elapsed = end["t"] - start["t"]
        nan = float("nan")
        named = [part for part in {**start, **end} if part not in ("busy", "t")]
        out = {
            part: (end[part] - start[part]) / elapsed if part in start and part in end else nan
            for part in dict.fromkeys(["api", "valkey", "postgres", "wrk", *named])
        }
        busy = (end.get("busy", nan) - start.get("busy", nan)) / elapsed
        out["others"] = max(0.0, busy - sum(out.values())) if busy == busy else nan
        return out


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


class Http:
    """Tiny JSON client for seeding (urllib: no dependency beyond the stdlib)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=dict(headers or {})
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, answer = self.call(method, path, body, headers)
        if status not in (200, 201, 202):
            raise RuntimeError(f"{method} {path} answered {status}: {answer}")
        return answer


# --------------------------------------------------------------------------- stores


@dataclass
class Stores:
    database_url: str
    redis_url: str
    kind: str  # shown in the results
    embedded: EmbeddedServers | None = None  # the embedded servers, when this script runs them


@contextlib.contextmanager
def stores(args: argparse.Namespace, workdir: Path) -> Iterator[Stores]:
    if args.database_url and args.redis_url:
        yield Stores(args.database_url, args.redis_url, "external (--database-url/--redis-url)")
        return
    if args.database_url or args.redis_url:
        raise SystemExit(f"{Path(sys.argv[0]).name}: give both --database-url and --redis-url")
    from qrloop.embedded import EmbeddedServers

    say(f"starting embedded PostgreSQL and Valkey in {workdir / 'data'}")
    servers = EmbeddedServers(workdir / "data")
    with servers as urls:
        yield Stores(
            urls.database_url, urls.redis_url, "embedded default (qrloop.embedded)", servers
        )


def bench_env(stores_: Stores, workdir: Path) -> dict[str, str]:
    """The environment of every qrloop process the benchmark starts: these stores, keys in
    `workdir`, benchmarks/ importable (bench_app), no QRLOOP_* setting of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRLOOP_")}
    env.update(
        DATABASE_URL=stores_.database_url,
        REDIS_URL=stores_.redis_url,
        QRLOOP_HOST="127.0.0.1",
        QRLOOP_PORT="8000",
        QRLOOP_KEYS_DIR=str(workdir / "keys"),
        QRLOOP_DATA_DIR=str(workdir / "data"),
        QRLOOP_SYNC_ORDER_LIMIT="1000000",
        QRLOOP_TOKEN_TTL_SECONDS="3600",
        QRLOOP_LOG_LEVEL="warning",
        PYTHONPATH=os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return env


def prepare(stores_: Stores, env: dict[str, str]) -> None:
    """What `qrloop serve` does before serving (keys, migrations, epochs), plus bench_codes."""
    from qrloop import db
    from qrloop.codes.keyring import KeyRing, ensure_dev_keys
    from qrloop.redis_client import connect
    from qrloop.settings import load
    from qrloop.settlement.state import ensure_epochs

    settings = load(env)
    ring = KeyRing.load(settings.keyring_path)
    if ensure_dev_keys(ring):
        ring.save(settings.keyring_path)

    sys.path.insert(0, str(HERE))
    from bench_app import BENCH_CODES_DDL

    async def go() -> None:
        await db.migrate(stores_.database_url, progress=lambda _: None)
        client = await connect(stores_.redis_url)
        pool = await db.create_pool(stores_.database_url, 2)
        try:
            await ensure_epochs(pool, client, settings.partitions)
            await pool.execute("DROP TABLE IF EXISTS bench_codes")
            await pool.execute(BENCH_CODES_DDL)
        finally:
            await client.aclose()
            await pool.close()

    run_async(go())


def drop_bench_table(database_url: str) -> None:
    async def go() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute("DROP TABLE IF EXISTS bench_codes")
        finally:
            await connection.close()

    with contextlib.suppress(Exception):
        run_async(go())


async def _sql(database_url: str, query: str, *params: Any) -> Any:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(query, *params)
    finally:
        await connection.close()


def sql(database_url: str, query: str, *params: Any) -> Any:
    return run_async(_sql(database_url, query, *params))


# --------------------------------------------------------------------------- the server


class Service:
    """One of our commands in its own process group, stopped with all its children on exit."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path, label: str):
        self.command = command
        self.env = env
        self.log_path = log_path
        self.label = label
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        say(f"starting {self.label}")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: we stop it and its workers together
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def ready(self) -> bool:
        """Whether it serves yet (polled after the start until it does)."""
        return True

    def _wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            if self.ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not get ready in {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # The group may outlive its leader for a moment (uvicorn's workers).
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(proc.pid):
                time.sleep(0.1)
            if not _group_alive(proc.pid):
                return


class Server(Service):
    """`run_api(settings, factory="bench_app:create")` (and a signer) in its own process group."""

    def __init__(self, env: dict[str, str], processes: int, workdir: Path) -> None:
        self.processes = processes
        self.base_url = f"http://127.0.0.1:{env['QRLOOP_PORT']}"
        super().__init__(
            [sys.executable, "-c", SERVE],
            {**env, "QRLOOP_API_PROCESSES": str(processes)},
            workdir / f"server-{processes}p.log",
            f"the API with {processes} process(es) on {self.base_url}",
        )

    def ready(self) -> bool:
        with contextlib.suppress(OSError):
            return Http(self.base_url).call("GET", "/health/ready", timeout=2)[0] == 200
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- the fixture


@dataclass
class Fixture:
    """One merchant, store, campaign and TERMINALS terminals with tokens, made through the API."""

    api_key: str
    campaign_id: int
    tokens_file: Path
    orders: int = 0

    def merchant(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def seed(http: Http, env: dict[str, str], workdir: Path, **campaign: Any) -> Fixture:
    """`campaign`: more fields for POST /v1/campaigns (e.g. platform_fee)."""
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "qrloop",
            "merchants",
            "create",
            "Benchmark",
            "--owner-email",
            f"bench-{uuid.uuid4().hex[:12]}@example.com",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    fields = dict(line.split("=", 1) for line in made.stdout.split())
    api_key = fields["api_key"]
    merchant = {"Authorization": f"Bearer {api_key}"}
    store = http.ok("POST", "/v1/stores", {"name": "Bench store"}, **merchant)["id"]
    tokens = []
    for n in range(TERMINALS):
        terminal = http.ok(
            "POST", "/v1/terminals", {"store_id": store, "name": f"Till {n + 1}"}, **merchant
        )
        exchange = {"terminal_id": terminal["id"], "secret": terminal["secret"]}
        tokens.append(http.ok("POST", "/v1/terminal/token", exchange)["access_token"])
    campaign = http.ok(
        "POST",
        "/v1/campaigns",
        {"name": "Bench cone", "face_value": 500, "currency": "CNY", **campaign},
        **merchant,
    )["id"]
    tokens_file = workdir / "tokens.txt"
    tokens_file.write_text("\n".join(tokens) + "\n")
    return Fixture(api_key, campaign, tokens_file)


def new_codes(
    http: Http, fixture: Fixture, database_url: str, quantity: int, path: Path
) -> tuple[int, int]:
    """Order `quantity` codes, export them (the API's CSV) into `path`, mirror in bench_codes.

    Returns (first serial, count).
    """
    fixture.orders += 1
    order = http.ok(
        "POST",
        f"/v1/campaigns/{fixture.campaign_id}/orders",
        {"quantity": quantity},
        **{"Idempotency-Key": f"bench-{os.getpid()}-{fixture.orders}"},
        **fixture.merchant(),
    )
    deadline = time.monotonic() + 600
    while http.ok("GET", f"/v1/orders/{order['id']}", **fixture.merchant())["status"] != "done":
        if time.monotonic() > deadline:
            raise RuntimeError(f"order {order['id']} was not signed in time")
        time.sleep(0.1)
    request = urllib.request.Request(
        f"{http.base_url}/v1/orders/{order['id']}/codes?format=csv", headers=fixture.merchant()
    )
    count = 0
    with urllib.request.urlopen(request, timeout=600) as response, open(path, "w") as out:
        rows = csv.reader(io.TextIOWrapper(response, encoding="utf-8"))
        next(rows)  # header: code,typed,claim_url
        for row in rows:
            out.write(row[0] + "\n")
            count += 1
    if count != quantity:
        raise RuntimeError(f"order {order['id']}: exported {count} codes, expected {quantity}")
    first = int(order["first_serial"])
    sql(
        database_url,
        "WITH n AS (INSERT INTO bench_codes (campaign_id, serial)"
        " SELECT $1, g FROM generate_series($2::bigint, $3::bigint) g RETURNING 1)"
        " SELECT count(*) FROM n",
        fixture.campaign_id,
        first,
        first + quantity - 1,
    )
    sql(database_url, "ANALYZE bench_codes")
    return first, count


def consumed(http: Http, fixture: Fixture, database_url: str, variant: str) -> int:
    """Codes the server says are used: Redis bits for (a), bench_codes rows for (c)."""
    if variant == "a":
        stats = http.ok("GET", f"/v1/campaigns/{fixture.campaign_id}/stats", **fixture.merchant())
        return int(stats["redeemed"])
    return int(
        sql(
            database_url,
            "SELECT count(*) FROM bench_codes WHERE campaign_id = $1 AND redeemed_at IS NOT NULL",
            fixture.campaign_id,
        )
    )


def smoke(http: Http, fixture: Fixture, codes: Path, tag: str) -> None:
    """One request per variant by hand: 200, and for (a) and (c) 409 on a replay."""
    lines = codes.read_text().split()
    token = fixture.tokens_file.read_text().split()[0]
    till = {"Authorization": f"Bearer {token}"}
    for n, (variant, (path, _)) in enumerate(VARIANTS.items()):
        code = lines[-1 - n]  # from the end: wrk's first requests use the start
        status, answer = http.call("POST", path, {"code": code, "nonce": f"{tag}-smoke-{n}"}, till)
        if status != 200:
            raise RuntimeError(f"smoke test: ({variant}) {path} answered {status}: {answer}")
        if variant in CONSUMING:
            again = {"code": code, "nonce": f"{tag}-smoke-{n}-again"}
            status, answer = http.call("POST", path, again, till)
            if status != 409:
                raise RuntimeError(f"smoke test: ({variant}) replay answered {status}: {answer}")


# --------------------------------------------------------------------------- wrk


@dataclass
class Run:
    processes: int
    connections: int
    round: int
    variant: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    wrapped: int
    server_delta: int | None = None  # codes consumed server-side during the run
    cpu: dict[str, float] = field(default_factory=dict)  # cores used, by part (CPU_PARTS)
    notes: list[str] = field(default_factory=list)


def wrk(
    base_url: str,
    path: str,
    connections: int,
    duration: float,
    codes: Path,
    tokens: Path,
    tag: str,
    rate: float = 0,
) -> dict[str, Any]:
    """One wrk run; `rate` > 0 paces it to about that many requests/s (redeem.lua)."""
    threads = min(2, connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        str(LUA),
        base_url + path,
        "--",
        str(codes),
        str(tokens),
        tag,
        str(threads),
        *([f"{rate:g}"] if rate > 0 else []),
    ]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        out, err = proc.communicate(timeout=duration + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    match = re.search(r"^BENCH_JSON (\{.*\})$", out, re.MULTILINE)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(command)}\n{out}\n{err}")
    result: dict[str, Any] = json.loads(match[1])
    return result


# --------------------------------------------------------------------------- the matrix


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], stores_: Stores) -> None:
        self.args = args
        self.env = env
        self.stores = stores_
        self.workdir = Path(env["QRLOOP_KEYS_DIR"]).parent
        self.runs: list[Run] = []
        self.fixture: Fixture | None = None
        self.tags = 0
        embedded = stores_.kind.startswith("embedded")
        self.meter = CpuMeter(self.workdir / "data" if embedded else None)
        # (when, source_identity()) at each server start, then at the end
        self.code: list[tuple[str, str]] = []
        self.quiet_budget = args.quiet_wait * 8  # in all, so a busy machine cannot stall a run

    def wait_quiet(self) -> None:
        """Wait (a bounded while) for the machine to be idle before a run."""
        deadline = time.monotonic() + min(self.args.quiet_wait, self.quiet_budget)
        waited = time.monotonic()
        while busy() > BUSY_LIMIT and time.monotonic() < deadline:
            time.sleep(0.5)
        spent = time.monotonic() - waited
        self.quiet_budget = max(0.0, self.quiet_budget - spent)
        if spent > 1.5:
            say(f"  waited {spent:.0f}s for other load to settle")

    def tag(self) -> str:
        self.tags += 1
        return f"b{os.getpid()}x{int(time.time())}r{self.tags}"

    def codes_for(self, http: Http, fixture: Fixture, rps: float, seconds: float) -> Path:
        quantity = max(2_000, math.ceil(rps * seconds * SIZE_MARGIN))
        path = self.workdir / "codes" / f"{fixture.orders + 1}.txt"
        path.parent.mkdir(exist_ok=True)
        started = time.monotonic()
        new_codes(http, fixture, self.stores.database_url, quantity, path)
        say(f"  {quantity} fresh codes ready in {time.monotonic() - started:.1f}s")
        return path

    def measure(
        self,
        server: Server,
        fixture: Fixture,
        variant: str,
        connections: int,
        codes: Path,
        duration: float | None = None,
        rate: float = 0,
        **trees: list[int],
    ) -> dict[str, Any]:
        """One wrk run (--duration unless `duration`, paced to `rate`/s if given); `trees`:
        more processes to meter (CpuMeter.snapshot)."""
        http = Http(server.base_url)
        before = None
        if variant in CONSUMING:
            before = consumed(http, fixture, self.stores.database_url, variant)
        self.wait_quiet()
        assert server.proc is not None
        start = self.meter.snapshot(server.proc.pid, **trees)
        result = wrk(
            server.base_url,
            VARIANTS[variant][0],
            connections,
            self.args.duration if duration is None else duration,
            codes,
            fixture.tokens_file,
            self.tag(),
            rate,
        )
        result["cpu"] = self.meter.cores(start, self.meter.snapshot(server.proc.pid, **trees))
        if before is not None:
            result["server_delta"] = (
                consumed(http, fixture, self.stores.database_url, variant) - before
            )
        return result

    def cell(self, server: Server, fixture: Fixture, best: dict[str, float]) -> None:
        for connections in self.args.connections:
            for round_ in range(1, self.args.rounds + 1):
                rps = max(best[v] for v in CONSUMING)
                codes = self.codes_for(Http(server.base_url), fixture, rps, self.args.duration)
                for variant in VARIANTS:
                    result = self.measure(server, fixture, variant, connections, codes)
                    run = self.record(server.processes, connections, round_, variant, result)
                    best[variant] = max(best[variant], run.rps)
                    say(
                        f"  p={server.processes} c={connections} round {round_} ({variant}):"
                        f" {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms"
                        f"  p99 {run.p99_ms:6.2f} ms  non-2xx {run.non_2xx}"
                        + (f"  !! {'; '.join(run.notes)}" if run.notes else "")
                    )

    def record(
        self, processes: int, connections: int, round_: int, variant: str, r: dict[str, Any]
    ) -> Run:
        run = Run(
            processes=processes,
            connections=connections,
            round=round_,
            variant=variant,
            rps=r["requests"] / (r["duration_us"] / 1e6),
            p50_ms=r["p50_us"] / 1000,
            p99_ms=r["p99_us"] / 1000,
            requests=r["requests"],
            non_2xx=r["non_2xx"],
            socket_errors=r["connect_errors"]
            + r["read_errors"]
            + r["write_errors"]
            + r["timeouts"],
            wrapped=r["wrapped"] if variant in CONSUMING else 0,
            server_delta=r.get("server_delta"),
            cpu=r.get("cpu", {}),
        )
        others = run.cpu.get("others", 0.0)
        if others > OTHERS_LIMIT:
            run.notes.append(f"other processes used {others:.2f} cores meanwhile")
        if run.non_2xx:
            run.notes.append(f"{run.non_2xx} non-2xx answers")
        if run.socket_errors:
            run.notes.append(f"{run.socket_errors} socket errors/timeouts")
        if run.wrapped:
            run.notes.append(f"ran out of codes ({run.wrapped} reused)")
        if run.server_delta is not None:
            ok = run.requests - run.non_2xx
            # Requests still in flight when wrk stops are served but not counted by wrk.
            if not 0 <= run.server_delta - ok <= connections:
                run.notes.append(f"server consumed {run.server_delta} codes, wrk saw {ok} 200s")
        self.runs.append(run)
        return run

    def warm_up(self, server: Server, fixture: Fixture) -> dict[str, float]:
        seconds = self.args.warmup
        connections = max(self.args.connections)
        guess = FIRST_GUESS_RPS * server.processes
        codes = self.codes_for(Http(server.base_url), fixture, guess, seconds)
        smoke(Http(server.base_url), fixture, codes, self.tag())
        best: dict[str, float] = {}
        # One set serves all three: (a) consumes in Redis, (c) in bench_codes, (b) nowhere.
        for variant in VARIANTS:
            result = wrk(
                server.base_url,
                VARIANTS[variant][0],
                connections,
                seconds,
                codes,
                fixture.tokens_file,
                self.tag(),
            )
            best[variant] = result["requests"] / (result["duration_us"] / 1e6)
            say(
                f"  warm-up ({variant}) c={connections}: {best[variant]:.0f} req/s,"
                f" non-2xx {result['non_2xx']}"
            )
        return best

    def run(self) -> None:
        for processes in self.args.processes:
            env = {**self.env, "QRLOOP_PORT": str(free_port())}
            # The API processes import qrloop when they start: note what they will import.
            self.code.append((f"with {processes} process(es)", source_identity()))
            with Server(env, processes, self.workdir) as server:
                http = Http(server.base_url)
                if self.fixture is None:
                    self.fixture = seed(http, env, self.workdir)
                best = self.warm_up(server, self.fixture)
                self.cell(server, self.fixture, best)
        self.code.append(("at the end", source_identity()))

    def code_summary(self) -> tuple[str, list[str]]:
        """What code ran, and a problem line when src/ changed while the benchmark ran."""
        if len({code for _, code in self.code}) <= 1:
            return (self.code[0][1] if self.code else source_identity()), []
        starts = "; ".join(f"{when}: {code}" for when, code in self.code[:-1])
        return starts, [f"- src/ changed while the benchmark ran ({'; '.join(self.code[-1])})"]


# --------------------------------------------------------------------------- reporting


def _out(*command: str) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=10, cwd=ROOT
        ).stdout.strip()
    except OSError:
        return ""


def source_identity() -> str:
    """The qrloop code that an API process started now would import: commit + changes."""
    import importlib.util

    spec = importlib.util.find_spec("qrloop")
    package = Path(spec.origin).resolve().parent if spec and spec.origin else None
    if package is not None and package.parent != ROOT / "src":
        # Not this checkout's src/ (PYTHONPATH, a snapshot, a wheel): name it by its content.
        digest = hashlib.sha256()
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(package)).encode() + path.read_bytes())
        return f"qrloop imported from {package} (content digest {digest.hexdigest()[:12]})"
    commit = _out("git", "rev-parse", "--short=12", "HEAD") or "?"
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", "src"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.splitlines()
    if not changed:
        return commit
    # What runs is the working tree: name it by a digest of its changes to src/.
    digest = hashlib.sha256()
    for line in sorted(changed):
        path = ROOT / line[3:].split(" -> ")[-1]
        digest.update(line.encode() + (path.read_bytes() if path.is_file() else b""))
    return (
        f"{commit} + uncommitted changes to {len(changed)} files in src/"
        f" (digest {digest.hexdigest()[:12]})"
    )


def machine(stores_: Stores, env: dict[str, str], code: str) -> list[tuple[str, str]]:
    out = _out

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in out("lscpu").splitlines()
            if line.startswith("Model name")
        ),
        platform.processor() or "?",
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    client = redis.Redis.from_url(stores_.redis_url)
    try:
        info = client.info("server")
        valkey = (
            f"Valkey {info['valkey_version']}"
            if "valkey_version" in info
            else f"Redis {info.get('redis_version', '?')}"
        )
        persistence = client.config_get("append*")
        aof = (
            f"appendonly {persistence.get('appendonly')},"
            f" appendfsync {persistence.get('appendfsync')}"
        )
    finally:
        client.close()
    postgres = str(sql(stores_.database_url, "SHOW server_version"))
    pg_sync = sql(stores_.database_url, "SHOW synchronous_commit")
    pg_fsync = sql(stores_.database_url, "SHOW fsync")
    return [
        ("CPU", f"{model}, {os.cpu_count()} CPUs (nproc {out('nproc')})"),
        ("RAM", f"{mem_kb / 1024 / 1024:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("Redis", f"{valkey} ({aof})"),
        ("PostgreSQL", f"{postgres} (fsync {pg_fsync}, synchronous_commit {pg_sync})"),
        ("Stores", stores_.kind),
        ("wrk", out("wrk", "-v").splitlines()[0] if out("wrk", "-v") else "?"),
        ("qrloop", code),
        ("Served", served(env)),
    ]


def served(env: dict[str, str]) -> str:
    from qrloop.settings import load

    settings = load(env)
    knobs = ", ".join(
        f"{name}={getattr(settings, name)}"
        for name in ("fast_path", "db_pool_size", "partitions")
        if hasattr(settings, name)
    )
    return (
        "`qrloop.app:create_asgi` plus the /bench routes on its Litestar app, through"
        f" `qrloop.cli.processes.run_api` (uvicorn, uvloop, httptools); settings: {knobs}"
    )


def summarise(runs: list[Run], processes: int, connections: int) -> dict[str, Any]:
    cell = [r for r in runs if r.processes == processes and r.connections == connections]
    by = {v: [r for r in cell if r.variant == v] for v in VARIANTS}
    rounds = sorted({r.round for r in cell})

    def ratio(x: str, y: str) -> float | None:
        per_round = []
        for n in rounds:
            xs = [r.rps for r in by[x] if r.round == n]
            ys = [r.rps for r in by[y] if r.round == n]
            if xs and ys and ys[0] > 0:
                per_round.append(xs[0] / ys[0])
        return statistics.median(per_round) if per_round else None

    return {
        "variants": {
            v: {
                "rps": statistics.median(r.rps for r in rs),
                "p50": statistics.median(r.p50_ms for r in rs),
                "p99": statistics.median(r.p99_ms for r in rs),
                "non_2xx": sum(r.non_2xx for r in rs),
                "cpu": {
                    part: statistics.median(r.cpu.get(part, math.nan) for r in rs)
                    for part in CPU_PARTS
                },
                "api_us": statistics.median(_api_us(r) for r in rs),
                "notes": sorted({note for r in rs for note in r.notes}),
            }
            for v, rs in by.items()
            if rs
        },
        "a/b": ratio("a", "b"),
        "a/c": ratio("a", "c"),
    }


def _command(script: str = "benchmarks/redeem.py") -> str:
    """The command line that ran, with the environment that changes what it measures."""
    command = shlex.join(["python", script, *sys.argv[1:]])
    if os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    return command


def _api_us(run: Run) -> float:
    """CPU the API processes spent per answered request, in µs."""
    return run.cpu.get("api", math.nan) / run.rps * 1e6 if run.rps else math.nan


def _cores(cpu: dict[str, float], parts: tuple[str, ...] = CPU_PARTS) -> str:
    return " / ".join(f"{cpu.get(part, math.nan):.2f}" for part in parts)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def heading(section: str, script: str) -> list[str]:
    """A section's first lines: its title, when it ran and the command that ran it."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [section, "", f"Run {when} with", "", "```sh", _command(script), "```", ""]


def report(
    args: argparse.Namespace,
    runs: list[Run],
    info: list[tuple[str, str]],
    extra_problems: list[str],
) -> str:
    lines = [
        *heading(SECTION, "benchmarks/redeem.py"),
        f"{args.duration:g} s per run, {args.rounds} round(s) per cell, variants alternated"
        f" a, b, c; wrk -t2 --latency; warm-up {args.warmup:g} s per variant per server start;"
        " every (a) and (c) request redeems a distinct valid code.",
        "",
    ]
    lines += [f"- {name}: {value}" for name, value in info]
    lines += [
        "",
        "Medians over rounds; ratios are computed within each round (same server, back to back)"
        " and their median is shown. Cores: CPU-seconds per second used by the API processes,"
        " Valkey, PostgreSQL, wrk and everything else on the machine during the run (2 = all).",
        "",
        "| API processes | connections | variant | redemptions/s | p50 ms | p99 ms | non-2xx"
        " | API CPU µs/request | cores: " + " / ".join(CPU_PARTS) + " |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    cells = [(p, c) for p in args.processes for c in args.connections]
    summaries = {cell: summarise(runs, *cell) for cell in cells}
    for (p, c), s in summaries.items():
        for v, m in s["variants"].items():
            lines.append(
                f"| {p} | {c} | ({v}) {VARIANTS[v][1]} | {m['rps']:.0f} | {m['p50']:.2f}"
                f" | {m['p99']:.2f} | {m['non_2xx']} | {m['api_us']:.0f}"
                f" | {_cores(m['cpu'])} |"
            )
    lines += [
        "",
        "| API processes | connections | (a)/(b) | (a)/(c) | p99 (a) ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for (p, c), s in summaries.items():
        a = s["variants"].get("a", {})
        lines.append(f"| {p} | {c} | {_fmt(s['a/b'])} | {_fmt(s['a/c'])} | {_fmt(a.get('p99'))} |")
    lines += ["", *targets(args, summaries)]
    problems = extra_problems + [
        f"- p={r.processes} c={r.connections} round {r.round} ({r.variant}): {'; '.join(r.notes)}"
        for r in runs
        if r.notes
    ]
    lines += [
        "",
        "Problems seen:"
        if problems
        else "Problems seen: none (no non-2xx, no socket"
        " errors, no reused code, server-side consumed counts match wrk's).",
        *problems,
    ]
    lines += every_run(
        runs,
        ("| p | c | round | variant", "|---:|---:|---:|---"),
        lambda r: f"| {r.processes} | {r.connections} | {r.round} | ({r.variant})",
    )
    return "\n".join(lines)


def every_run(
    runs: list[Run],
    head: tuple[str, str],
    first: Callable[[Run], str],
    parts: tuple[str, ...] = CPU_PARTS,
) -> list[str]:
    """A folded table of every wrk run; `head` (titles, alignments) names the leading columns
    that `first(run)` fills."""
    lines = [
        "",
        "<details><summary>Every run</summary>",
        "",
        f"{head[0]} | req/s | p50 ms | p99 ms | requests | non-2xx | consumed server-side"
        " | cores: " + " / ".join(parts) + " |",
        f"{head[1]}|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        delta = "" if r.server_delta is None else str(r.server_delta)
        lines.append(
            f"{first(r)} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.requests}"
            f" | {r.non_2xx} | {delta} | {_cores(r.cpu, parts)} |"
        )
    return [*lines, "", "</details>", ""]


def targets(args: argparse.Namespace, summaries: dict[tuple[int, int], Any]) -> list[str]:
    """The issue's targets, for 2 API processes."""
    if 2 not in args.processes:
        return ["Targets (2 API processes): not measured in this run."]
    out = ["Targets with 2 API processes:", ""]
    for c in args.connections:
        s = summaries[(2, c)]
        ab, ac = s["a/b"], s["a/c"]
        ab_ok = "met" if ab is not None and ab >= 1.0 else "MISSED"
        ac_ok = "met" if ac is not None and ac >= 3 else "MISSED"
        out.append(
            f"- c={c}: (a)/(b) = {_fmt(ab)} (target ≥ 1.0, aim 1.5): {ab_ok};"
            f" (a)/(c) = {_fmt(ac)} (target ≥ 3): {ac_ok}"
        )
    if 8 in args.connections:
        p99 = summaries[(2, 8)]["variants"].get("a", {}).get("p99")
        verdict = "met" if p99 is not None and p99 <= 5 else "MISSED"
        out.append(f"- p99 of (a) at 8 connections = {_fmt(p99)} ms (target ≤ 5 ms): {verdict}")
    return out


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per run (10)")
    parser.add_argument("--rounds", type=int, default=2, help="a, b, c repetitions per cell (2)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, nargs="+", help="(64 8; with --whole 64 8 1)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds per variant (3)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke: 3 s runs, 1 round, 1 s warm-up"
    )
    parser.add_argument(
        "--whole",
        action="store_true",
        help="the whole system instead: `qrloop serve` as the README runs it (API, settlement"
        " worker, signer, PostgreSQL, Valkey), with CPU per redemption by role"
        " (benchmarks/whole_system.py)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="with --whole: also serve git revision REV's src/, alternated within each round",
    )
    common_options(parser, quiet_wait=15)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 3, 1, 1
    if args.connections is None:
        args.connections = [64, 8, 1] if args.whole else [64, 8]
    if args.baseline and not args.whole:
        parser.error("--baseline needs --whole")
    if not args.whole and any(c < 2 for c in args.connections):
        parser.error("--connections must be at least 2 (wrk runs 2 threads)")
    return args


def common_options(parser: argparse.ArgumentParser, quiet_wait: float) -> None:
    """The options every benchmark built on Bench and bench_main takes."""
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=quiet_wait,
        help="wait up to this many seconds before each run for other load to settle"
        f" ({quiet_wait:g})",
    )
    parser.add_argument("--database-url", help="a scratch PostgreSQL (with --redis-url)")
    parser.add_argument("--redis-url", help="a scratch Redis/Valkey (with --database-url)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.whole:
        import whole_system

        return bench_main(
            args,
            whole_system.SECTION,
            whole_system.Whole,
            lambda bench, info, problems: whole_system.report(args, bench, info, problems),
        )
    return bench_main(
        args, SECTION, Bench, lambda bench, info, problems: report(args, bench.runs, info, problems)
    )


def bench_main(
    args: argparse.Namespace,
    section: str,
    make: Callable[[argparse.Namespace, dict[str, str], Stores], Any],
    render: Callable[[Any, list[tuple[str, str]], list[str]], str],
) -> int:
    """Run a benchmark made by `make(args, env, stores)` (a Bench: run(), code_summary()) on
    fresh stores, then print `render(bench, machine info, problems)` and write it as `section`
    of RESULTS.md unless --no-write. Everything started is stopped on the way out."""
    script = Path(sys.argv[0]).name
    if shutil.which("wrk") is None:
        print(
            f"{script}: wrk is not installed. Install it with `sudo apt-get install -y wrk`"
            " (Debian/Ubuntu), `brew install wrk` (macOS), or build it from"
            " https://github.com/wg/wrk.",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix=f"qrloop-{Path(script).stem}-", dir="/tmp"))
    started = time.monotonic()
    try:
        with stores(args, workdir) as stores_:
            env = bench_env(stores_, workdir)
            prepare(stores_, env)
            bench = make(args, env, stores_)
            try:
                bench.run()
                code, code_problems = bench.code_summary()
                info = machine(stores_, env, code)
            finally:
                if stores_.kind.startswith("external"):
                    drop_bench_table(stores_.database_url)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = render(bench, info, code_problems)
    print()
    print(text)
    if not args.no_write:
        write_section(section, text)
        say(f"wrote {RESULTS.relative_to(ROOT)} ({time.monotonic() - started:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
