"""The signer process: walks each queued order block by block, recording its progress and, at
the end, the SHA-256 of its CSV export.

Exports are derived again on demand from (campaign, serial, key) by whichever API process is
asked (issuance/exports.py), so the signer writes no file and signers share nothing with API
processes but PostgreSQL. What it still does: check that the order's key signs, advance `done`
(the merchant's progress bar) and compute the digest a merchant can check a download against.

Progress is durable: after each block, `done` and `export_bytes` move forward in one UPDATE,
and the last block's UPDATE also stores the digest and marks the order done. A hash cannot be
saved half-way, so a signer resuming an order (its own, or one whose signer stopped renewing
its heartbeat) derives the blocks already counted again, for the digest alone, renewing the
heartbeat as it goes. A cancelled order stops at the next block.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop import metrics
from qrloop.codes.bulk import CSV_HEADER, rows_parallel
from qrloop.db import DB_ERRORS, create_pool
from qrloop.issuance.orders import ORDERS_CHANNEL, claim_base_of
from qrloop.keys import Keys
from qrloop.probes import start_probes
from qrloop.rows import ORDER_COLUMNS, Order, order_of
from qrloop.settings import Settings
from qrloop.webhooks import outbox

log = logging.getLogger("qrloop.signer")

BLOCK = 50_000
POLL_SECONDS = 1.0

# A running order whose signer has renewed no heartbeat for $2 seconds is taken over; our own
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
UPDATE orders SET done = $3, export_bytes = $4, heartbeat_at = now(),
    status = CASE WHEN $3 = quantity THEN 'done' ELSE status END,
    export_sha256 = CASE WHEN $3 = quantity THEN $5::bytea END,
    finished_at = CASE WHEN $3 = quantity THEN now() END
WHERE id = $1 AND signer = $2 AND status = 'running'
RETURNING status
"""

# A block counted before is derived again for the digest alone: the claim is only renewed.
_HEARTBEAT = """
UPDATE orders SET heartbeat_at = now()
WHERE id = $1 AND signer = $2 AND status = 'running'
RETURNING status
"""


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
        counted, remaining = order.done, order.quantity - order.done
        log.info(
            "order %s: signing %d codes from serial %d%s",
            order.id,
            remaining,
            order.first_serial + counted,
            f" (deriving the {counted} signed before again, for the digest)" if counted else "",
        )
        blocks = rows_parallel(
            key,
            order.campaign_id,
            order.first_serial,
            order.quantity,
            claim_base_of(order, self._settings.base_url),
            "csv",
            self._settings.signer_processes,
            BLOCK,
        )
        digest = hashlib.sha256(CSV_HEADER)
        size = len(CSV_HEADER)
        metrics.CODES_TO_SIGN.set(remaining)
        with contextlib.closing(blocks), _nothing_left_to_sign():
            for offset, count in _block_sizes(order.quantity):
                block = await asyncio.to_thread(next, blocks)
                await asyncio.to_thread(digest.update, block)
                size += len(block)
                done = offset + count
                if done <= counted:
                    status = await self._pool.fetchval(_HEARTBEAT, order.id, self._name)
                else:
                    status = await self._progress(order.id, done, size, digest.digest())
                    signed = done - max(offset, counted)
                    self.signed += signed
                    remaining -= signed
                    metrics.CODES_SIGNED.inc(signed)
                    metrics.CODES_TO_SIGN.set(remaining)
                if status is None:
                    log.info("order %s: no longer ours (cancelled or taken over)", order.id)
                    return
                if status == "done" or stop.is_set():
                    log.info("order %s: %s", order.id, status if status == "done" else "paused")
                    return

    async def _progress(self, order_id: int, done: int, size: int, digest: bytes) -> str | None:
        """Record that the first `done` codes (`size` bytes of CSV) are signed, with the digest
        of those bytes; the order's completion and its webhook event commit together."""
        async with self._pool.acquire() as connection, connection.transaction():
            status: str | None = await connection.fetchval(
                _PROGRESS, order_id, self._name, done, size, digest
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


def _block_sizes(total: int) -> Iterator[tuple[int, int]]:
    """(offset in the order, size) of each block."""
    for offset in range(0, total, BLOCK):
        yield offset, min(BLOCK, total - offset)


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
