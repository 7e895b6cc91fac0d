"""The signer process: writes each queued order's codes to its export file, block by block.

Progress is durable: a block is appended and fsynced, then `done` and `export_bytes` move
forward in one UPDATE. A signer killed mid-order leaves a file that may hold more than
`export_bytes`; whoever resumes truncates it there and goes on from serial `first + done`, so
no serial is written twice or skipped. A cancelled order stops at the next block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop import metrics
from qrloop.codes.bulk import CSV_HEADER, rows_parallel
from qrloop.db import DB_ERRORS, create_pool
from qrloop.issuance.orders import ORDERS_CHANNEL
from qrloop.keys import Keys
from qrloop.probes import start_probes
from qrloop.rows import ORDER_COLUMNS, Order, order_of
from qrloop.settings import Settings
from qrloop.webhooks import outbox

log = logging.getLogger("qrloop.signer")

BLOCK = 50_000
POLL_SECONDS = 1.0

# A running order whose signer has written no block for $2 seconds is taken over; our own
# running order (left when PostgreSQL went away mid-order) is resumed at once.
_CLAIM_NEXT = f"""
UPDATE orders SET status = 'running', signer = $1, heartbeat_at = now()
WHERE id = (
    SELECT id FROM orders
    WHERE status = 'queued'
       OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => $2))
       OR (status = 'running' AND signer = $1)
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING {ORDER_COLUMNS}
"""

_PROGRESS = """
UPDATE orders SET done = done + $3, export_bytes = $4, heartbeat_at = now(),
    status = CASE WHEN done + $3 = quantity THEN 'done' ELSE status END,
    finished_at = CASE WHEN done + $3 = quantity THEN now() END
WHERE id = $1 AND signer = $2 AND status = 'running'
RETURNING status
"""


def export_file(settings: Settings, order_id: int) -> Path:
    return settings.exports_path / f"order-{order_id}.csv"


def private_directory(path: Path) -> None:
    """Create `path` as 0700, or make it so: the umask may be permissive, and as root the
    embedded PostgreSQL opens the parents of its data folder (the data dir included) to its
    own user, so only the folder's own mode keeps other users out of the codes."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class OrderSigner:
    """Claims queued (or abandoned) orders one at a time and signs them to completion."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self._keys = Keys(settings)
        self._name = f"{socket.gethostname()}-{os.getpid()}"
        self._wake = asyncio.Event()
        self.signed = 0

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Sign until `stop` is set; an order in hand is left resumable, never half-counted."""
        private_directory(self._settings.exports_path)
        while not stop.is_set():
            try:
                row = await self._pool.fetchrow(
                    _CLAIM_NEXT, self._name, self._settings.signer_stale_seconds
                )
                if row is not None:
                    await self._sign(order_of(row), stop)
                    continue
            except DB_ERRORS as error:
                # The order in hand stays ours: the next claim resumes it from its last block.
                log.warning("postgres unavailable, retrying: %s: %s", type(error).__name__, error)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _sign(self, order: Order, stop: asyncio.Event) -> None:
        # The ring as every process reads it (QRLOOP_KEYRING or the file, reloaded on change).
        self._keys.reload_if_changed()
        key = self._keys.keyring.get(order.key_id)
        if key is None:
            await self._pool.execute("UPDATE orders SET status = 'failed' WHERE id = $1", order.id)
            log.error("order %s: signing key %s is not in the ring", order.id, order.key_id)
            return
        path = export_file(self._settings, order.id)
        remaining = order.quantity - order.done
        log.info(
            "order %s: signing %d codes from serial %d",
            order.id,
            remaining,
            order.first_serial + order.done,
        )
        blocks = rows_parallel(
            key,
            order.campaign_id,
            order.first_serial + order.done,
            remaining,
            self._settings.base_url + "/c/",
            "csv",
            self._settings.signer_processes,
            BLOCK,
        )
        metrics.CODES_TO_SIGN.set(remaining)
        with (
            _resumed(path, order.export_bytes) as file,
            contextlib.closing(blocks),
            _nothing_left_to_sign(),
        ):
            for count in _block_sizes(remaining):
                block = await asyncio.to_thread(next, blocks)
                written = await asyncio.to_thread(_append, file, block)
                status = await self._progress(order.id, count, written)
                self.signed += count
                remaining -= count
                metrics.CODES_SIGNED.inc(count)
                metrics.CODES_TO_SIGN.set(remaining)
                if status is None:
                    log.info("order %s: no longer ours (cancelled or taken over)", order.id)
                    await self._remove_if_cancelled(order.id, path)
                    return
                if status == "done" or stop.is_set():
                    log.info("order %s: %s", order.id, status if status == "done" else "paused")
                    return

    async def _remove_if_cancelled(self, order_id: int, path: Path) -> None:
        """A cancelled order's codes are void: its partial file goes (the cancel removed it
        already unless this signer recreated it since)."""
        status = await self._pool.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
        if status == "cancelled":
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def _progress(self, order_id: int, count: int, written: int) -> str | None:
        """Record a signed block; the order's completion and its webhook event commit together."""
        async with self._pool.acquire() as connection, connection.transaction():
            status: str | None = await connection.fetchval(
                _PROGRESS, order_id, self._name, count, written
            )
            if status == "done":
                await outbox.order_completed(
                    connection,
                    order_id,
                    self._settings.base_url,
                    self._settings.webhook_retry_seconds,
                )
        return status


@contextlib.contextmanager
def _nothing_left_to_sign() -> Iterator[None]:
    """However signing an order ends, this process no longer holds codes to sign."""
    try:
        yield
    finally:
        metrics.CODES_TO_SIGN.set(0)


def _block_sizes(total: int) -> Iterator[int]:
    while total > 0:
        size = min(BLOCK, total)
        yield size
        total -= size


@contextlib.contextmanager
def _resumed(path: Path, durable_bytes: int) -> Iterator[BinaryIO]:
    """The export file (0600 whatever the umask), cut back to the bytes `done` accounts for."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(descriptor, 0o600)
    with open(descriptor, "ab+") as file:
        file.truncate(durable_bytes)
        file.seek(durable_bytes)
        if durable_bytes == 0:
            file.write(CSV_HEADER)
        yield file


def _append(file: BinaryIO, block: bytes) -> int:
    """Write and fsync a block; return the file's durable length."""
    file.write(block)
    file.flush()
    os.fsync(file.fileno())
    return file.tell()


@contextlib.asynccontextmanager
async def _listening(
    settings: Settings, pool: asyncpg.Pool, wake: Callable[..., None]
) -> AsyncIterator[None]:
    """Wake on every new order (NOTIFY) where a connection can LISTEN: QRLOOP_DATABASE_LISTEN_URL,
    or the pool's own when it is not behind a transaction pooler (which would hand the LISTEN
    to a server connection that goes on to serve others). Else the signer polls each second."""
    if settings.database_listen_url:
        connection = await asyncpg.connect(settings.database_listen_url, timeout=10)
        async with _listener(connection, wake):
            yield
        with contextlib.suppress(*DB_ERRORS):
            await connection.close()
    elif settings.statement_cache:
        async with pool.acquire() as pooled, _listener(pooled, wake):
            yield
    else:
        log.info("no LISTEN behind a transaction pooler: new orders are polled each second")
        yield


@contextlib.asynccontextmanager
async def _listener(
    connection: asyncpg.Connection | PoolConnectionProxy, wake: Callable[..., None]
) -> AsyncIterator[None]:
    await connection.add_listener(ORDERS_CHANNEL, wake)
    try:
        yield
    finally:
        # After an outage the listening connection may be gone; polling carried on without it.
        with contextlib.suppress(*DB_ERRORS):
            await connection.remove_listener(ORDERS_CHANNEL, wake)


async def serve(settings: Settings) -> None:
    """Run a signer until SIGTERM or SIGINT; the order in hand stops at its next block."""
    assert settings.database_url
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pool = await create_pool(settings.database_url, 2, statement_cache=settings.statement_cache)
    signer = OrderSigner(settings, pool)

    async def ready() -> None:
        await pool.fetchval("SELECT 1")

    probes = await start_probes(settings, ready)
    stop_waiter = asyncio.create_task(stop.wait())
    stop_waiter.add_done_callback(lambda _: signer.wake())
    try:
        async with _listening(settings, pool, signer.wake):
            await signer.run(stop)
    finally:
        if probes:
            probes.close()
        await pool.close()
    log.info("signer stopped after signing %d codes", signer.signed)
