"""Store names for the `already_redeemed` answer, cached in process.

Only a refusal of a used code asks for a name, never a redemption: a miss costs one indexed
read, a hit a dict lookup, and a name that cannot be read leaves the answer without it.
"""

from __future__ import annotations

import time

import asyncpg

from qrloop.db import DB_ERRORS

_KEEP_SECONDS = 300.0
_LIMIT = 10_000


class StoreNames:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._names: dict[int, tuple[str, float]] = {}

    async def name(self, store_id: int) -> str | None:
        """The store's name, at most five minutes old; None if PostgreSQL cannot say."""
        cached = self._names.get(store_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            name: str | None = await self._pool.fetchval(
                "SELECT name FROM stores WHERE id = $1", store_id
            )
        except DB_ERRORS:
            return None
        if name is not None:
            if len(self._names) >= _LIMIT:
                self._names.clear()
            self._names[store_id] = (name, now + _KEEP_SECONDS)
        return name
