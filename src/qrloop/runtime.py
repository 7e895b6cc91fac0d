"""What a running API process holds: the infrastructure, built once at start. Each area builds
its own services on it (its `dependencies.py`)."""

from __future__ import annotations

import asyncpg

from qrloop.keys import Keys
from qrloop.redemption.pipe import Pipe
from qrloop.redis_client import Client
from qrloop.settings import Settings


class Runtime:
    """Shared by every request of one process; routes receive it, or its parts by name, by
    dependency injection.

    A plain class, not a dataclass: the framework checks a dependency of a plain class by its
    class alone, where it would convert a dataclass field by field on every request (and
    refuse `redis`, which is one of two client types)."""

    __slots__ = ("keys", "pipe", "pool", "redis", "settings", "writes")

    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: Client,
        pipe: Pipe,
        writes: Pipe,
        keys: Keys,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.pipe = pipe
        # Consumes and reversals: `pipe`, or one that confirms each write (WAITAOF).
        self.writes = writes
        self.keys = keys
