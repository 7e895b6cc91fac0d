"""The dispatcher: posts due deliveries, records every attempt, schedules retries.

Delivery is at least once: an attempt whose outcome could not be recorded (the worker died,
PostgreSQL was away) is made again when its lease runs out, so receivers deduplicate on the
event id (`Qrloop-Event-Id`). Several workers share the work through row locks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import httpx
import msgspec

from qrloop.codes.keyring import KeyStatus, Purpose
from qrloop.db import DB_ERRORS
from qrloop.keys import Keys
from qrloop.settings import Settings
from qrloop.webhooks.destinations import Refused, destination
from qrloop.webhooks.outbox import public_event_id
from qrloop.webhooks.signature import (
    SIGNATURE_HEADER,
    derive_key,
    legacy_secret_text,
    sign,
    standard_headers,
)

log = logging.getLogger("qrloop.webhooks")

SLOTS = 32  # attempts under way at once in one worker
PER_ENDPOINT = 4  # attempts under way at once for one endpoint
POLL_SECONDS = 0.5
MAX_RETRY_DELAY_SECONDS = 3600.0
USER_AGENT = "qrloop-webhooks/1"

# Taking due deliveries also leases them: until the lease ends no other worker takes them.
# Each endpoint gets the oldest due up to $4 attempts under way at once, counting those under
# way here ($5 for endpoints $3): a slow or hanging endpoint holds a few slots, never every
# merchant's events, and one with slots free gets its new events while older attempts run.
_TAKE_DUE = """
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
FROM webhook_endpoints w, webhook_events e
WHERE d.id IN (
    SELECT id FROM webhook_deliveries WHERE id IN (
        SELECT id FROM (
            SELECT id, endpoint_id, next_attempt_at,
                   row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at) AS place
            FROM (
                SELECT id, endpoint_id, next_attempt_at FROM webhook_deliveries
                WHERE status = 'pending' AND next_attempt_at <= now()
                ORDER BY next_attempt_at LIMIT 1000
            ) AS oldest
        ) AS ranked
        LEFT JOIN unnest($3::bigint[], $5::integer[]) AS busy (endpoint_id, under_way)
            USING (endpoint_id)
        WHERE place <= $4 - coalesce(busy.under_way, 0) ORDER BY next_attempt_at LIMIT $1
    ) FOR UPDATE SKIP LOCKED
) AND w.id = d.endpoint_id AND e.id = d.event_id
RETURNING d.id, d.attempts, w.id AS endpoint_id, w.url, w.secret_key_id, w.secret_salt,
          e.id AS event_id, e.type, e.created_at, e.data::text AS data
"""

_NEXT_DUE_IN = """
SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8
FROM webhook_deliveries WHERE status = 'pending'
"""

_RECORD_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, duration_ms, status_code, error)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
"""

_DELIVERED = """
UPDATE webhook_deliveries
SET status = 'delivered', delivered_at = now(), last_status = $2, last_error = NULL
WHERE id = $1
"""

# A retry that would fall after the delivery's horizon is not scheduled: the delivery fails.
_RETRY_OR_FAIL = """
UPDATE webhook_deliveries
SET status = CASE WHEN now() + make_interval(secs => $4) > give_up_at
                  THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => $4), last_status = $2, last_error = $3
WHERE id = $1
RETURNING status
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    started: datetime
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Envelope(msgspec.Struct):
    """The body every endpoint receives."""

    id: str
    type: str
    created_at: datetime
    data: msgspec.Raw


def retry_delay(attempt: int, first: float) -> float:
    """Seconds before the next attempt after `attempt` failures: doubling from `first`, capped
    at an hour, with ±20 % jitter so endpoints coming back are not hit all at once."""
    delay = min(first * 2.0 ** (attempt - 1), MAX_RETRY_DELAY_SECONDS)
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 - spreading load, not a secret


class Dispatcher:
    """Delivers due webhook deliveries until stopped."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._keys = Keys(settings)
        self._client = httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        )
        # An attempt's lease outlives its timeout, so a live attempt is never taken twice.
        self._lease_seconds = settings.webhook_timeout_seconds + 30
        self.delivered = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; attempts under way are finished first."""
        under_way: dict[asyncio.Task[None], int] = {}  # attempt → its endpoint
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                due = await self._take(SLOTS - len(under_way), Counter(under_way.values()))
                for row in due:
                    under_way[asyncio.create_task(self._attempt(row))] = row["endpoint_id"]
                if not due:
                    # Until an attempt ends, a retry falls due or the next poll.
                    await asyncio.wait(
                        {stopping, *under_way},
                        timeout=await self._idle_seconds(),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                for task in [task for task in under_way if task.done()]:
                    del under_way[task]
            if under_way:
                await asyncio.wait(under_way)
        finally:
            stopping.cancel()
            await self._client.aclose()

    async def _take(self, free: int, busy: Counter[int]) -> list[asyncpg.Record]:
        """Lease up to `free` due deliveries; `busy` counts attempts under way per endpoint."""
        if free <= 0:
            return []
        try:
            self._keys.reload_if_changed()
            endpoints, under_way = list(busy), list(busy.values())
            rows: list[asyncpg.Record] = await self._pool.fetch(
                _TAKE_DUE, free, self._lease_seconds, endpoints, PER_ENDPOINT, under_way
            )
        except DB_ERRORS as error:
            log.warning("postgres unavailable, retrying: %s", error)
            return []
        return rows

    async def _idle_seconds(self) -> float:
        """Until the next retry falls due, or POLL_SECONDS for new events, whichever is first."""
        try:
            due_in: float | None = await self._pool.fetchval(_NEXT_DUE_IN)
        except DB_ERRORS:
            return POLL_SECONDS
        return POLL_SECONDS if due_in is None else min(max(due_in, 0.0), POLL_SECONDS)

    async def _attempt(self, row: asyncpg.Record) -> None:
        outcome = await self._post(row)
        try:
            await self._record(row, outcome)
        except DB_ERRORS as error:
            # The lease runs out and the delivery is attempted again: at least once.
            log.warning("could not record delivery %s: %s", row["id"], error)

    async def _post(self, row: asyncpg.Record) -> Outcome:
        started, clock = datetime.now().astimezone(), time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            target = await destination(row["url"], self._settings.webhook_private_networks)
            body = self._body(row)
            async with self._client.stream(
                "POST",
                target.url,
                content=body,
                headers={**target.headers, **self._headers(row, body)},
                extensions=target.extensions,
            ) as response:
                status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"the endpoint answered {status_code}"
        except (Refused, SigningKeyUnusable) as refusal:
            error = str(refusal)
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:500]
        duration_ms = round((time.perf_counter() - clock) * 1000)
        return Outcome(status_code, error, started, duration_ms)

    def _body(self, row: asyncpg.Record) -> bytes:
        envelope = Envelope(
            id=public_event_id(row["event_id"]),
            type=row["type"],
            created_at=row["created_at"],
            data=msgspec.Raw(row["data"].encode()),
        )
        return msgspec.json.encode(envelope)

    def _headers(self, row: asyncpg.Record, body: bytes) -> dict[str, str]:
        key = self._keys.keyring.get(row["secret_key_id"])
        if (
            key is None
            or key.purpose is not Purpose.WEBHOOK
            or key.status
            in (
                KeyStatus.REVOKED,
                KeyStatus.RETIRED,
            )
        ):
            raise SigningKeyUnusable(
                f"webhook key {row['secret_key_id']} is gone or withdrawn; rotate the endpoint's"
                " secret"
            )
        signing_key = derive_key(key.secret, row["endpoint_id"], row["secret_salt"])
        event_id, now = public_event_id(row["event_id"]), int(time.time())
        return {
            **standard_headers(signing_key, event_id, body, now),
            SIGNATURE_HEADER: sign(legacy_secret_text(signing_key), body, now),
            "Qrloop-Event-Id": event_id,
            "Qrloop-Event-Type": row["type"],
            "Qrloop-Delivery-Attempt": str(row["attempts"]),
        }

    async def _record(self, row: asyncpg.Record, outcome: Outcome) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                _RECORD_ATTEMPT,
                row["id"],
                row["attempts"],
                outcome.started,
                outcome.duration_ms,
                outcome.status_code,
                outcome.error,
            )
            if outcome.delivered:
                await connection.execute(_DELIVERED, row["id"], outcome.status_code)
                self.delivered += 1
                return
            delay = retry_delay(row["attempts"], self._settings.webhook_first_retry_seconds)
            status = await connection.fetchval(
                _RETRY_OR_FAIL, row["id"], outcome.status_code, outcome.error, delay
            )
        if status == "failed":
            log.warning(
                "webhook delivery %s to endpoint %s failed for good after %d attempts: %s",
                row["id"], row["endpoint_id"], row["attempts"], outcome.error,
            )  # fmt: skip


class SigningKeyUnusable(Exception):
    """The key an endpoint's secret derives from can no longer sign."""
