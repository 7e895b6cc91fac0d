"""Each API process re-reads what can change under a till four times a second, off the hot path:
the key ring, campaign rules, disabled terminals and stores, rotated terminal secrets, and
blocked terminals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from redis.exceptions import RedisError

from qrloop.codes.keyring import KeyRingError
from qrloop.db import DB_ERRORS
from qrloop.keys import Keys
from qrloop.redemption.gate import TerminalGate
from qrloop.redemption.rules import RulesCache

log = logging.getLogger("qrloop.refresher")

# Bounds how long a pause, a new window, a disabled terminal or a rotated terminal secret takes
# to reach every process.
REFRESH_SECONDS = 0.25
_KEEP_LAST_STATE: tuple[type[Exception], ...] = (RedisError, KeyRingError, *DB_ERRORS)


async def keep_fresh(keys: Keys, rules: RulesCache, gate: TerminalGate, pool: asyncpg.Pool) -> None:
    """Run until cancelled; a failed round keeps the last known state and tries again."""
    while True:
        try:
            keys.reload_if_changed()
            await rules.refresh()
            await gate.refresh(pool)
        except _KEEP_LAST_STATE as error:
            log.warning("refresh failed, keeping the last known state: %s", error)
        await asyncio.sleep(REFRESH_SECONDS)


@contextlib.asynccontextmanager
async def refreshing(
    keys: Keys, rules: RulesCache, gate: TerminalGate, pool: asyncpg.Pool
) -> AsyncIterator[None]:
    """Keep these fresh for the duration of the block."""
    task = asyncio.create_task(keep_fresh(keys, rules, gate, pool))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
