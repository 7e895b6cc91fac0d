"""The redemption area's services: built once per process on the runtime's infrastructure,
kept fresh in the background, and provided to the till routes and the fast path."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from litestar.datastructures import State

from qrloop.keys import Keys
from qrloop.redemption.decide import Redeemer
from qrloop.redemption.gate import TerminalGate
from qrloop.redemption.pipe import Pipe
from qrloop.redemption.refresher import refreshing
from qrloop.redemption.rules import RulesCache
from qrloop.redemption.store import CodeStateStore
from qrloop.settings import Settings


@dataclass(frozen=True, slots=True)
class Till:
    """What answers a till: the keys its tokens are checked with, and the redeemer."""

    keys: Keys
    redeemer: Redeemer


@contextlib.asynccontextmanager
async def serving(
    state: State,
    settings: Settings,
    pool: asyncpg.Pool,
    pipe: Pipe,
    keys: Keys,
    writes: Pipe | None = None,
) -> AsyncIterator[Till]:
    """Build the till's services into `state`, where the providers below find them, and keep
    what can change under a till fresh while the block runs. `writes` consumes and reverses
    codes (a pipe that confirms each write, under QRLOOP_REDIS_DURABILITY=replicated)."""
    rules = RulesCache(pool)
    await rules.preload()
    gate = TerminalGate(pipe, settings.invalid_scans_per_minute, settings.token_ttl_seconds)
    store = CodeStateStore(pipe, settings.partitions, writes=writes)
    state.till = till = Till(keys, Redeemer(keys, rules, gate, store, pool))
    async with refreshing(keys, rules, gate, pool):
        yield till


def provide_till(state: State) -> Till:
    till: Till = state.till
    return till


def provide_redeemer(state: State) -> Redeemer:
    return provide_till(state).redeemer
