"""What a running API process holds: connections, keys and caches, built once at start."""

from __future__ import annotations

import asyncpg

from qrloop.codes.verify_pool import VerifierPool
from qrloop.keys import Keys
from qrloop.redemption.decide import Redeemer
from qrloop.redemption.gate import TerminalGate
from qrloop.redemption.pipe import Pipe
from qrloop.redemption.rules import RulesCache
from qrloop.redis_client import Client
from qrloop.settings import Settings


class Runtime:
    """Shared by every request of one process; routes receive it by dependency injection.

    A plain class, not a dataclass: the framework checks a dependency of a plain class by its
    class alone, where it would convert a dataclass field by field on every request (and
    refuse `redis`, which is one of two client types)."""

    __slots__ = ("gate", "keys", "pipe", "pool", "redeemer", "redis", "rules", "settings",
                 "verifiers")  # fmt: skip

    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: Client,
        pipe: Pipe,
        keys: Keys,
        rules: RulesCache,
        gate: TerminalGate,
        redeemer: Redeemer,
        verifiers: VerifierPool,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.pipe = pipe
        self.keys = keys
        self.rules = rules
        self.gate = gate
        self.redeemer = redeemer
        self.verifiers = verifiers
