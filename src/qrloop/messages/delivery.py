"""The delivery loop: hands each due message of the outbox to the sender of its channel.

It runs in the settlement worker process beside the webhook dispatcher. Several workers share
the work through row locks and leases: a message whose attempt could not be recorded is tried
again when its lease runs out (at least once). A real sender's message loses its recipient and
body as soon as it is delivered or given up; the development sender's keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import get_args

import asyncpg

from qrloop.db import DB_ERRORS
from qrloop.messages.configured import real_sender
from qrloop.messages.dev import DevSender
from qrloop.messages.sender import Channel, Message, Sender, SendFailed
from qrloop.settings import Settings

log = logging.getLogger("qrloop.messages")

BATCH = 16
POLL_SECONDS = 0.2
LEASE_SECONDS = 120
FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 300.0

_TAKE_DUE = """
UPDATE consumer_messages
SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM consumer_messages
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING id, channel, recipient, subject, body, attempts
"""

# $3: whether the sender keeps no copy of its own (a real one), so ours is erased.
_SENT = """
UPDATE consumer_messages
SET status = 'sent', sent_at = now(), delivered_by = $2, last_error = NULL,
    recipient = CASE WHEN $3 THEN NULL ELSE recipient END,
    subject = CASE WHEN $3 THEN NULL ELSE subject END,
    body = CASE WHEN $3 THEN NULL ELSE body END
WHERE id = $1
"""

# Given up (permanent, or the next try would fall after give_up_at): nothing personal is kept.
_RETRY_OR_FAIL = """
UPDATE consumer_messages
SET next_attempt_at = now() + make_interval(secs => $3), last_error = $2,
    status = CASE WHEN $4 OR now() + make_interval(secs => $3) > give_up_at
                  THEN 'failed' ELSE 'pending' END
WHERE id = $1
RETURNING status
"""

_ERASE_FAILED = """
UPDATE consumer_messages SET recipient = NULL, subject = NULL, body = NULL
WHERE id = $1 AND status = 'failed'
"""


def sender_for(channel: Channel, settings: Settings) -> Sender:
    """The sender of `channel`'s messages: the development sender until a real one is set."""
    return real_sender(channel, settings) or DevSender()


def senders(settings: Settings) -> dict[Channel, Sender]:
    return {channel: sender_for(channel, settings) for channel in get_args(Channel)}


def retry_delay(attempt: int) -> float:
    """Doubling from FIRST_RETRY_SECONDS, at most MAX_RETRY_SECONDS, with ±20 % jitter."""
    delay = min(FIRST_RETRY_SECONDS * 2.0 ** (attempt - 1), MAX_RETRY_SECONDS)
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 - spreading load, not a secret


class Courier:
    """Delivers due consumer messages until stopped."""

    def __init__(self, pool: asyncpg.Pool, by_channel: Mapping[Channel, Sender]) -> None:
        self._pool = pool
        self._senders = by_channel
        self.delivered = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; the batch in hand is finished first."""
        while not stop.is_set():
            try:
                due = await self._pool.fetch(_TAKE_DUE, BATCH, LEASE_SECONDS)
            except DB_ERRORS as error:
                log.warning("postgres unavailable, retrying: %s", error)
                due = []
            if due:
                await asyncio.gather(*(self._deliver(row) for row in due))
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)

    async def _deliver(self, row: asyncpg.Record) -> None:
        channel: Channel = row["channel"]
        sender = self._senders[channel]
        message = Message(row["id"], channel, row["recipient"], row["subject"], row["body"])
        try:
            await sender.send(message)
        except SendFailed as failure:
            await self._record_failure(row, str(failure), failure.permanent)
            return
        except Exception as error:  # a sender's bug must not stop every other message
            log.exception("sender %s failed on message %d", type(sender).__name__, row["id"])
            await self._record_failure(row, type(error).__name__, permanent=False)
            return
        try:
            real = not isinstance(sender, DevSender)
            await self._pool.execute(_SENT, row["id"], type(sender).__name__, real)
            self.delivered += 1
        except DB_ERRORS as error:
            log.warning("could not record message %d as sent: %s", row["id"], error)

    async def _record_failure(self, row: asyncpg.Record, error: str, permanent: bool) -> None:
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                status = await connection.fetchval(
                    _RETRY_OR_FAIL, row["id"], error[:500], retry_delay(row["attempts"]), permanent
                )
                await connection.execute(_ERASE_FAILED, row["id"])
        except DB_ERRORS as failure:
            log.warning("could not record message %d's failure: %s", row["id"], failure)
            return
        if status == "failed":
            attempts = row["attempts"]
            log.warning("message %d given up after %d attempts: %s", row["id"], attempts, error)
