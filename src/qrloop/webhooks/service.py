"""Merchants' webhook endpoints: registration, listing, removal, secrets and delivery log."""

from __future__ import annotations

import secrets

import asyncpg
import msgspec

from qrloop.codes.keyring import Algorithm, KeyRing, KeyRingError, Purpose
from qrloop.errors import Problem, Reason
from qrloop.pagination import Page, newest_page, page_sql
from qrloop.webhooks.destinations import Refused, destination
from qrloop.webhooks.outbox import EventType, public_event_id
from qrloop.webhooks.schemas import Attempt, Delivery, EndpointIn, EndpointOut, EndpointSecret
from qrloop.webhooks.signature import derive_key, secret_text

_COLUMNS = "id, url, events, active, created_at"
DELIVERY_LOG_LIMIT = 100


def _out(row: asyncpg.Record) -> EndpointOut:
    return EndpointOut(
        id=row["id"],
        url=row["url"],
        events=[EventType(e) for e in row["events"]],
        active=row["active"],
        created_at=row["created_at"],
    )


def _no_endpoint(endpoint_id: int) -> Problem:
    return Problem(Reason.NOT_FOUND, f"No webhook endpoint {endpoint_id} in this account.")


def _signing_key(keyring: KeyRing) -> tuple[int, bytes]:
    try:
        key = keyring.signing_key(Purpose.WEBHOOK, Algorithm.HMAC_SHA256)
    except KeyRingError:
        raise Problem(
            Reason.UNAVAILABLE,
            "No active webhook key: run `qrloop keys generate --purpose webhook`.",
        ) from None
    return key.id, key.secret


def _with_secret(row: asyncpg.Record, key_secret: bytes, salt: bytes) -> EndpointSecret:
    endpoint = msgspec.structs.asdict(_out(row))
    return EndpointSecret(**endpoint, secret=secret_text(derive_key(key_secret, row["id"], salt)))


async def create(
    pool: asyncpg.Pool, keyring: KeyRing, merchant_id: int, data: EndpointIn, private: bool
) -> EndpointSecret:
    """Register an endpoint; its secret is in the answer, and never again (rotate to replace)."""
    try:
        await destination(data.url, private)
    except Refused as why:
        raise Problem(Reason.BAD_REQUEST, f"Cannot send webhooks there: {why}.") from None
    key_id, key_secret = _signing_key(keyring)
    salt = secrets.token_bytes(16)
    events = [e.value for e in (data.events or list(EventType))]
    row = await pool.fetchrow(
        "INSERT INTO webhook_endpoints (merchant_id, url, events, secret_key_id, secret_salt)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
        merchant_id, data.url, sorted(set(events)), key_id, salt,
    )  # fmt: skip
    assert row is not None
    return _with_secret(row, key_secret, salt)


ENDPOINTS_PAGE = page_sql(f"SELECT {_COLUMNS} FROM webhook_endpoints")


async def page(
    pool: asyncpg.Pool, merchant_id: int, cursor: str | None, limit: int
) -> Page[EndpointOut]:
    """A page of the merchant's endpoints, newest first, removed ones included."""
    return await newest_page(pool, ENDPOINTS_PAGE, merchant_id, cursor, limit, out=_out)


async def get(pool: asyncpg.Pool, merchant_id: int, endpoint_id: int) -> EndpointOut:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2",
        endpoint_id,
        merchant_id,
    )
    if row is None:
        raise _no_endpoint(endpoint_id)
    return _out(row)


async def deactivate(pool: asyncpg.Pool, merchant_id: int, endpoint_id: int) -> EndpointOut:
    """Stop sending to an endpoint; its pending deliveries fail, its log stays readable."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "UPDATE webhook_endpoints SET active = false WHERE id = $1 AND merchant_id = $2"
            f" RETURNING {_COLUMNS}",
            endpoint_id,
            merchant_id,
        )
        if row is None:
            raise _no_endpoint(endpoint_id)
        await connection.execute(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint removed'"
            " WHERE endpoint_id = $1 AND status = 'pending'",
            endpoint_id,
        )
    return _out(row)


async def rotate_secret(
    pool: asyncpg.Pool, keyring: KeyRing, merchant_id: int, endpoint_id: int
) -> EndpointSecret:
    """A new secret under the newest webhook key; the old one stops signing at once."""
    key_id, key_secret = _signing_key(keyring)
    salt = secrets.token_bytes(16)
    row = await pool.fetchrow(
        "UPDATE webhook_endpoints SET secret_key_id = $3, secret_salt = $4"
        f" WHERE id = $1 AND merchant_id = $2 AND active RETURNING {_COLUMNS}",
        endpoint_id, merchant_id, key_id, salt,
    )  # fmt: skip
    if row is None:
        raise Problem(Reason.NOT_FOUND, f"No active webhook endpoint {endpoint_id} here.")
    return _with_secret(row, key_secret, salt)


async def deliveries(
    pool: asyncpg.Pool, merchant_id: int, endpoint_id: int, limit: int
) -> list[Delivery]:
    """The newest deliveries to an endpoint, each with the log of its attempts."""
    await get(pool, merchant_id, endpoint_id)
    rows = await pool.fetch(
        "SELECT d.id, d.event_id, e.type, d.status, d.attempts, d.next_attempt_at,"
        " d.delivered_at, d.last_status, d.last_error"
        " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
        " WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2",
        endpoint_id,
        limit,
    )
    attempts = await pool.fetch(
        "SELECT delivery_id, attempt, attempted_at, duration_ms, status_code, error"
        " FROM webhook_attempts WHERE delivery_id = ANY ($1::bigint[]) ORDER BY attempt",
        [row["id"] for row in rows],
    )
    log: dict[int, list[Attempt]] = {}
    for a in attempts:
        log.setdefault(a["delivery_id"], []).append(
            Attempt(a["attempt"], a["attempted_at"], a["duration_ms"], a["status_code"], a["error"])
        )
    return [
        Delivery(
            id=row["id"],
            event_id=public_event_id(row["event_id"]),
            event_type=EventType(row["type"]),
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
            delivered_at=row["delivered_at"],
            last_status=row["last_status"],
            last_error=row["last_error"],
            log=log.get(row["id"], []),
        )
        for row in rows
    ]


async def redeliver(
    pool: asyncpg.Pool, merchant_id: int, endpoint_id: int, delivery_id: int, hours: float
) -> None:
    """Send a delivery again now (after a fix at the receiver), with a fresh retry horizon."""
    done = await pool.fetchval(
        "UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now(),"
        " give_up_at = now() + make_interval(secs => $4)"
        " FROM webhook_endpoints w"
        " WHERE d.id = $3 AND d.endpoint_id = $2 AND w.id = d.endpoint_id"
        " AND w.merchant_id = $1 AND w.active RETURNING d.id",
        merchant_id, endpoint_id, delivery_id, hours * 3600,
    )  # fmt: skip
    if done is None:
        raise Problem(Reason.NOT_FOUND, f"No delivery {delivery_id} to an active endpoint here.")


async def delivery_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Deliveries still being tried ("pending") and given up ("failed"), for /metrics."""
    rows = await pool.fetch(
        "SELECT status, count(*) FROM webhook_deliveries"
        " WHERE status IN ('pending', 'failed') GROUP BY status"
    )
    return {row["status"]: row["count"] for row in rows}
