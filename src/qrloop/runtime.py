"""What a running API process holds: the infrastructure, built once at start. Each area builds
its own services on it (its `dependencies.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import redis.asyncio as redis

from qrloop.keys import Keys
from qrloop.redemption.pipe import RedisPipe
from qrloop.settings import Settings


@dataclass(slots=True)
class Runtime:
    """Shared by every request of one process; routes receive it, or its parts by name, by
    dependency injection."""

    settings: Settings
    pool: asyncpg.Pool
    redis: redis.Redis
    pipe: RedisPipe
    keys: Keys
