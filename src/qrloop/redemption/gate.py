"""Which terminals may scan right now: not disabled, not blocked for guessing, and holding a
token exchanged for the terminal's current secret (or a paired phone's unrevoked credential).

Everything a valid scan needs is answered from process memory. Redis is written only when a
scan is invalid (to count it), and read by the background refresher, so the limiter adds no
round trip to a valid redemption.
"""

from __future__ import annotations

import time

import asyncpg
from redis.exceptions import RedisError

from qrloop import keyspace
from qrloop.accounts.tokens import TerminalClaims, epoch_ms
from qrloop.redemption import outcomes
from qrloop.redemption.outcomes import Outcome, Refused
from qrloop.redemption.pipe import Pipe

WINDOW_SECONDS = 60
# Rotations are remembered for the token lifetime plus this, so that clocks a little apart
# cannot end the memory of a rotation before the last token minted before it has expired.
_ROTATION_MARGIN_SECONDS = 60


class TerminalGate:
    """Disabled terminals and stores, terminals blocked after too many invalid scans, and
    terminals whose secret was rotated within a token lifetime."""

    def __init__(self, pipe: Pipe, invalid_scans_per_minute: int, token_ttl_seconds: int) -> None:
        self._pipe = pipe
        self._limit = invalid_scans_per_minute
        self._rotation_memory_seconds = token_ttl_seconds + _ROTATION_MARGIN_SECONDS
        self._disabled_terminals: frozenset[int] = frozenset()
        self._disabled_stores: frozenset[int] = frozenset()
        self._blocked: dict[int, float] = {}
        self._rotated: dict[int, int] = {}  # terminal id → credentials_since (ms) of its secret
        self._revoked_devices: frozenset[int] = frozenset()  # paired phones (till/), recently

    def admit(self, terminal: TerminalClaims) -> Refused | None:
        """Why this terminal may not scan now, or None; memory only."""
        if terminal.terminal_id in self._disabled_terminals or (
            terminal.store_id in self._disabled_stores
        ):
            return outcomes.DISABLED
        # A token exchanged for a secret that was rotated away since: as good as a forged one.
        rotated = self._rotated.get(terminal.terminal_id)
        if rotated is not None and terminal.credentials_since_ms < rotated:
            return outcomes.SECRET_ROTATED
        # A paired phone's token outlives its revocation by at most a refresh.
        if terminal.device_id and terminal.device_id in self._revoked_devices:
            return outcomes.SECRET_ROTATED
        until = self._blocked.get(terminal.terminal_id)
        if until is not None and until > time.time():
            return Refused(Outcome.RATE_LIMITED, blocked_until=until)
        return None

    async def count_invalid(self, terminal_id: int) -> Refused | None:
        """Count an invalid scan; RATE_LIMITED once the terminal is over its limit."""
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = keyspace.invalid_scans(terminal_id, window)
        try:
            count = await self._pipe.call("INCR", key)
            if count == 1:
                await self._pipe.call("EXPIRE", key, 2 * WINDOW_SECONDS)
            if count <= self._limit:
                return None
            until = (window + 1) * WINDOW_SECONDS
            await self._pipe.call("ZADD", keyspace.BLOCKED_TERMINALS, str(until), terminal_id)
        except RedisError:
            return None  # the invalid answer stands; counting is best effort when Redis is away
        self._blocked[terminal_id] = until
        return Refused(Outcome.RATE_LIMITED, blocked_until=until)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        """Re-read disabled terminals and stores, recent rotations and revoked phones
        (PostgreSQL), and blocked terminals (Redis)."""
        terminals = await pool.fetch("SELECT id FROM terminals WHERE disabled_at IS NOT NULL")
        stores = await pool.fetch("SELECT id FROM stores WHERE disabled_at IS NOT NULL")
        rotated = await pool.fetch(
            "SELECT id, credentials_since FROM terminals"
            " WHERE credentials_since > now() - make_interval(secs => $1)",
            self._rotation_memory_seconds,
        )
        revoked = await pool.fetch(
            "SELECT id FROM till_devices WHERE revoked_at > now() - make_interval(secs => $1)",
            self._rotation_memory_seconds,
        )
        self._disabled_terminals = frozenset(row["id"] for row in terminals)
        self._revoked_devices = frozenset(row["id"] for row in revoked)
        self._disabled_stores = frozenset(row["id"] for row in stores)
        self._rotated = {row["id"]: epoch_ms(row["credentials_since"]) for row in rotated}
        now = time.time()
        blocked = await self._pipe.call(
            "ZRANGEBYSCORE", keyspace.BLOCKED_TERMINALS, str(now), "+inf", "WITHSCORES"
        )
        pairs = zip(blocked[0::2], blocked[1::2], strict=True)
        self._blocked = {int(member): float(score) for member, score in pairs}
        await self._pipe.call("ZREMRANGEBYSCORE", keyspace.BLOCKED_TERMINALS, "-inf", str(now))
