"""Each API process re-reads what can change under a till twice a second, off the hot path."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from redis.exceptions import RedisError

from qrloop.redemption.gate import TerminalGate
from qrloop.redemption.rules import RulesCache

log = logging.getLogger("qrloop.refresher")

# Bounds how long a pause, a new window or a disabled terminal takes to reach every process.
REFRESH_SECONDS = 0.5


async def keep_fresh(rules: RulesCache, gate: TerminalGate, pool: asyncpg.Pool) -> None:
    """Run until cancelled; a failed round keeps the last known state and tries again."""
    while True:
        try:
            await rules.refresh()
            await gate.refresh(pool)
        except (OSError, asyncpg.PostgresError, RedisError) as error:
            log.warning("refresh failed, keeping the last known state: %s", error)
        await asyncio.sleep(REFRESH_SECONDS)


@contextlib.asynccontextmanager
async def refreshing(rules: RulesCache, gate: TerminalGate, pool: asyncpg.Pool):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(keep_fresh(rules, gate, pool))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
