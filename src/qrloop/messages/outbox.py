"""The outbox of consumer messages: written by the consumer pages, read by the delivery loop."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from qrloop.messages.catalogue import Kind, Language, render
from qrloop.messages.sender import Channel

_ENQUEUE = """
INSERT INTO consumer_messages (channel, recipient, language, kind, subject, body, give_up_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
RETURNING id
"""

# The latest messages the development sender "delivered", oldest first.
_TAIL = """
SELECT id, channel, recipient, body FROM (
    SELECT id, channel, recipient, body FROM consumer_messages
    WHERE delivered_by = $1 AND id > $2 ORDER BY id DESC LIMIT $3
) AS latest ORDER BY id
"""


async def enqueue(
    pool: asyncpg.Pool,
    channel: Channel,
    recipient: str,
    language: Language,
    kind: Kind,
    give_up_seconds: float,
    **params: str,
) -> int:
    """Queue one message; the worker delivers it, trying again until `give_up_seconds`."""
    subject, body = render(kind, language, **params)
    message_id: int = await pool.fetchval(
        _ENQUEUE, channel, recipient, language, kind, subject, body, give_up_seconds
    )
    return message_id


async def latest(
    pool: asyncpg.Pool, delivered_by: str, count: int, after: int = 0
) -> list[asyncpg.Record]:
    """The last `count` messages `delivered_by` a sender (by class name) after id `after`."""
    rows: list[asyncpg.Record] = await pool.fetch(_TAIL, delivered_by, after, count)
    return rows


async def wait_for_queued(pool: asyncpg.Pool, within: float) -> None:
    """Until the messages queued so far have left (or `within` seconds passed)."""
    last: int | None = await pool.fetchval("SELECT max(id) FROM consumer_messages")
    deadline = time.monotonic() + within
    while last is not None and time.monotonic() < deadline:
        if not await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM consumer_messages WHERE status = 'pending' AND id <= $1)",
            last,
        ):
            return
        await asyncio.sleep(0.1)
