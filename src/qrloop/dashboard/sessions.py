"""Dashboard sessions, server-side in Redis: the browser holds only a random 256-bit token.

The key is the token's SHA-256, so neither the keys nor a dump of them name a live session.
A session ends when idle (its key expires; each request pushes the expiry back), at its
absolute end however busy, at logout, and when its user's password changes or the user is
removed (checked against PostgreSQL on every request, by `auth`).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from redis.typing import EncodableT, FieldT

from qrloop import keyspace
from qrloop.redis_client import Client
from qrloop.settings import Settings

_FIELDS = ("user_id", "merchant_id", "csrf", "started_ms")


@dataclass(frozen=True, slots=True)
class Session:
    key: str
    user_id: int
    merchant_id: int
    csrf: str  # the synchronizer token every state-changing form of this session carries
    started_ms: int


def _key(token: str) -> str:
    return keyspace.dashboard_session(hashlib.sha256(token.encode()).hexdigest())


def _idle_seconds(settings: Settings) -> int:
    return settings.dashboard_idle_minutes * 60


def lifetime_seconds(settings: Settings) -> int:
    return settings.dashboard_session_hours * 3600


async def start(
    client: Client, settings: Settings, user_id: int, merchant_id: int, not_before: datetime
) -> str:
    """A new session with a new token and a new CSRF token; the token is returned (for the
    cookie) and stored nowhere. Its start is never before `not_before` (the user's
    `sessions_since`, PostgreSQL's clock), so a host clock behind the database's cannot make
    a session refused as older than the password it was opened with."""
    token = secrets.token_urlsafe(32)
    key = _key(token)
    fields: dict[FieldT, EncodableT] = {
        "user_id": user_id,
        "merchant_id": merchant_id,
        "csrf": secrets.token_urlsafe(32),
        "started_ms": max(int(time.time() * 1000), math.ceil(not_before.timestamp() * 1000)),
    }
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, _idle_seconds(settings))
        await pipe.execute()
    return token


async def find(client: Client, settings: Settings, token: str | None) -> Session | None:
    """The live session of this token, its idle expiry pushed back; None for an unknown,
    idle or too old one (an old one is ended)."""
    if not token:
        return None
    key = _key(token)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hmget(key, list(_FIELDS))
        # Only pushes back a key that exists: an ended session is not brought back.
        pipe.expire(key, _idle_seconds(settings), xx=True)
        values, _ = await pipe.execute()
    if any(value is None for value in values):
        return None
    user_id, merchant_id, csrf, started_ms = (
        value.decode() if isinstance(value, bytes) else value for value in values
    )
    if time.time() * 1000 - int(started_ms) > lifetime_seconds(settings) * 1000:
        await client.delete(key)
        return None
    return Session(key, int(user_id), int(merchant_id), csrf, int(started_ms))


async def end(client: Client, token: str | None) -> None:
    if token:
        await client.delete(_key(token))
