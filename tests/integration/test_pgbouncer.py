"""qrloop behind a real PgBouncer in transaction mode (QRLOOP_DATABASE_POOL_MODE=transaction):
the whole closed loop works through it, and the setting is what makes it work."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from qrloop import db
from support import Stores, eventually, own_stores, redeem, serving_on, till

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
pytestmark = pytest.mark.skipif(
    PGBOUNCER is None,
    reason="pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)",
)
# Server connections per database and user: fewer than qrloop's processes open as clients,
# so transactions of different processes share server connections.
POOL_SIZE = 4
# A Unix socket's name only: nothing listens on TCP, so no port can be taken already.
PORT = 6432


@contextmanager
def pgbouncer(direct_url: str) -> Iterator[str]:
    """A PgBouncer of the test's own in transaction mode before `direct_url`'s database, on a
    Unix socket in a fresh folder; yields the URL through it, stops it at the end."""
    parts = urlsplit(direct_url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
    user, password = parts.username or "postgres", parts.password
    folder = Path(tempfile.mkdtemp(prefix="qrloop-pgb-"))
    server = f"host={host} port={parts.port or 5432} dbname={parts.path.lstrip('/')} user={user}"
    (folder / "pgbouncer.ini").write_text(f"""[databases]
qrloop = {server}{f" password={password}" if password else ""}
[pgbouncer]
listen_addr =
unix_socket_dir = {folder}
listen_port = {PORT}
auth_type = trust
auth_file = {folder}/users.txt
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 500
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
""")
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    command = [str(PGBOUNCER), str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: run it as the owner of PostgreSQL's socket folder
        # (an embedded server's is private to its user), or as nobody for a TCP server.
        owner = Path(host).owner() if host.startswith("/") else "nobody"
        for path in (folder, *folder.iterdir()):
            shutil.chown(path, owner)
        command[1:1] = ["-u", owner]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not (folder / f".s.PGSQL.{PORT}").exists():
            log = folder / "pgbouncer.log"
            assert process.poll() is None, log.read_text() if log.exists() else "no log"
            assert time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.05)
        yield f"postgresql://{user}@/qrloop?host={folder}&port={PORT}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def direct(stores: Stores) -> Iterator[Stores]:
    """A database and Redis db of this module's own, reached directly."""
    with own_stores(stores) as own:
        yield own


def test_kept_prepared_statements_break_behind_it_and_the_setting_avoids_them(
    direct: Stores,
) -> None:
    """Through PgBouncer in transaction mode, a connection that keeps prepared statements
    (asyncpg's default) fails once its next transaction lands on another server connection;
    a connection made as qrloop makes them with the statement cache off (the setting) runs the
    same statements in the same interleaving without error."""

    async def interleave(statement_cache: bool) -> None:
        with pgbouncer(direct.database_url) as url:
            first = await db.connect(url, statement_cache=statement_cache)
            other = await db.connect(url, statement_cache=statement_cache)
            try:
                assert await first.fetchval("SELECT $1::int + 1", 1) == 2
                # The other client holds the server connection the first one prepared on.
                async with other.transaction():
                    await other.fetchval("SELECT $1::int + 2", 1)
                    assert await first.fetchval("SELECT $1::int + 1", 2) == 3
            finally:
                await first.close()
                await other.close()

    with pytest.raises(asyncpg.InvalidSQLStatementNameError):
        asyncio.run(interleave(statement_cache=True))
    asyncio.run(interleave(statement_cache=False))


class Hooks:
    """A webhook receiver in the test process: the types of the events it was sent."""

    def __init__(self) -> None:
        received: list[str] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body)["type"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def count(self, event_type: str) -> int:
        return self.received.count(event_type)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def _fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


def _server_connections(direct: Stores) -> int:
    """Sessions on the database other than the one asking."""
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    count: int = asyncio.run(_fetch(direct.database_url, query))[0][0]
    return count


def test_the_closed_loop_behind_pgbouncer(direct: Stores, scratch_dir: Path) -> None:
    """`qrloop serve` with DATABASE_URL through PgBouncer (transaction mode, 4 server
    connections for API, worker, signer and CLI processes that open many more) and
    QRLOOP_DATABASE_POOL_MODE=transaction: it migrates, creates a merchant, signs an order
    (the signer polls: nothing LISTENs through the pooler), redeems five codes and reverses
    one, settles them into the ledger (the worker making its months through the pooler), and
    delivers every webhook; the stats and the day's settlement agree; PostgreSQL never saw
    more than the pool's server connections."""
    hooks = Hooks()
    with (
        pgbouncer(direct.database_url) as url,
        serving_on(
            Stores(url, direct.redis_url),
            scratch_dir,
            QRLOOP_DATABASE_POOL_MODE="transaction",
            QRLOOP_WEBHOOK_PRIVATE_NETWORKS="true",
        ) as stack,
    ):
        merchant = stack.new_merchant()
        endpoint = merchant.post("/v1/webhooks", {"url": hooks.url})
        assert endpoint.status_code == 201, endpoint.text
        store = merchant.created("/v1/stores", {"name": "Main street"})["id"]
        token = merchant.terminal_token(store)
        campaign = merchant.campaign(platform_fee=10)
        codes = merchant.codes(campaign, 5)
        answers = [redeem(stack, token, code).json() for code in codes]
        assert {answer["status"] for answer in answers} == {"redeemed"}
        reversal = f"/v1/redemptions/{answers[0]['redemption_id']}/reverse"
        assert till(stack, reversal, token, {}).status_code == 200

        def delivered() -> bool:
            return (
                hooks.count("redemption.created") == 5
                and hooks.count("redemption.reversed") == 1
                and hooks.count("order.completed") == 1
            )

        eventually(delivered, within=60)
        stats = merchant.get(f"/v1/campaigns/{campaign}/stats").json()
        assert (stats["settled"], stats["reversed"], stats["settled_value"]) == (5, 1, 4 * 500)
        booked = "SELECT max(booked_at)::date FROM ledger_transactions"
        day = asyncio.run(_fetch(direct.database_url, booked))[0][0]
        report = merchant.get("/v1/settlements", date=str(day)).json()
        assert [(line["redemptions"], line["reversals"]) for line in report["lines"]] == [(5, 1)]
        months = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'redemptions'::regclass"
        assert asyncio.run(_fetch(direct.database_url, months))[0][0] >= 3
        assert _server_connections(direct) <= POOL_SIZE
    hooks.close()


def test_a_signer_behind_it_listens_on_the_direct_url(direct: Stores) -> None:
    """With QRLOOP_DATABASE_LISTEN_URL, a signer behind PgBouncer LISTENs for new orders on a
    connection of its own straight to PostgreSQL (a pooled one would be handed to others)."""
    # Only this test's database: a shared server may hold other listeners (other tests, runs).
    listening = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query = 'LISTEN \"qrloop_orders\"'"
    )
    asyncio.run(db.migrate(direct.database_url, progress=lambda _: None))
    with pgbouncer(direct.database_url) as url:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": direct.redis_url,
            "QRLOOP_DATABASE_POOL_MODE": "transaction",
            "QRLOOP_DATABASE_LISTEN_URL": direct.database_url,
        }
        signer = subprocess.Popen([sys.executable, "-m", "qrloop", "signer"], env=env)
        try:
            eventually(
                lambda: asyncio.run(_fetch(direct.database_url, listening))[0][0] == 1, within=30
            )
        finally:
            signer.terminate()
            signer.wait(timeout=30)
