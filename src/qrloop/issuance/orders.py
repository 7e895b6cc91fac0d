"""Orders: a serial range reserved in a campaign, never a row per code."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop.codes.keyring import Algorithm, KeyRing, KeyRingError, Purpose
from qrloop.errors import Problem, Reason
from qrloop.issuance.quotas import Quotas
from qrloop.issuance.schemas import OrderOut
from qrloop.pagination import Page, newest_page, page_sql
from qrloop.rows import ORDER_COLUMNS, Order, order_of

# Signers LISTEN here; a new order wakes one at once instead of at its next poll.
ORDERS_CHANNEL = "qrloop_orders"


def claim_links_base(base_url: str) -> str:
    """What a claim link is made of before its token, from a public URL."""
    return base_url + "/c/"


def claim_base_of(order: Order, base_url: str) -> str:
    """The base of the order's claim links: the one fixed when it was placed, so every export
    of it is the same bytes; an order placed before that was recorded uses `base_url`'s."""
    return order.claim_base or claim_links_base(base_url)


def _out(order: Order) -> OrderOut:
    return OrderOut(
        id=order.id,
        campaign_id=order.campaign_id,
        status=order.status,
        quantity=order.quantity,
        done=order.done,
        first_serial=order.first_serial,
    )


async def create(
    pool: asyncpg.Pool,
    keyring: KeyRing,
    *,
    merchant_id: int,
    campaign_id: int,
    quantity: int,
    idempotency_key: str | None,
    quotas: Quotas,
    claim_base: str,
) -> OrderOut:
    """Reserve `quantity` serials, whose claim links start with `claim_base`; a repeated
    Idempotency-Key returns the first order."""
    if idempotency_key is not None:
        existing = await _by_idempotency_key(pool, merchant_id, idempotency_key)
        if existing is not None:
            return _same_order(existing, campaign_id, quantity)
    try:
        async with pool.acquire() as connection, connection.transaction():
            order = await _reserve(
                connection,
                keyring,
                quotas,
                merchant_id,
                campaign_id,
                quantity,
                idempotency_key,
                claim_base,
            )
    except asyncpg.UniqueViolationError:
        # A concurrent request with the same Idempotency-Key won the race: answer with its order.
        assert idempotency_key is not None
        existing = await _by_idempotency_key(pool, merchant_id, idempotency_key)
        assert existing is not None
        return _same_order(existing, campaign_id, quantity)
    return _out(order)


async def _reserve(
    connection: PoolConnectionProxy,
    keyring: KeyRing,
    quotas: Quotas,
    merchant_id: int,
    campaign_id: int,
    quantity: int,
    idempotency_key: str | None,
    claim_base: str,
) -> Order:
    # One order at a time per merchant, so concurrent orders cannot both fit the last quota.
    await connection.execute("SELECT FROM merchants WHERE id = $1 FOR UPDATE", merchant_id)
    campaign = await connection.fetchrow(
        "UPDATE campaigns SET next_serial = next_serial + $3"
        " WHERE id = $1 AND merchant_id = $2"
        " RETURNING next_serial - $3 AS first_serial, algorithm",
        campaign_id,
        merchant_id,
        quantity,
    )
    if campaign is None:
        raise Problem(Reason.NOT_FOUND, f"No campaign {campaign_id} in this account.")
    await quotas.admit_order(connection, merchant_id, quantity)
    try:
        key = keyring.signing_key(Purpose.CODE, Algorithm(campaign["algorithm"]))
    except KeyRingError:
        raise Problem(
            Reason.UNAVAILABLE,
            f"No active {campaign['algorithm']} signing key; run `qrloop keys generate`.",
        ) from None
    # The range is reserved now; the signer process walks it in the background.
    row = await connection.fetchrow(
        "INSERT INTO orders (campaign_id, merchant_id, key_id, first_serial, quantity,"
        " status, idempotency_key, claim_base) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)"
        f" RETURNING {ORDER_COLUMNS}",
        campaign_id,
        merchant_id,
        key.id,
        campaign["first_serial"],
        quantity,
        idempotency_key,
        claim_base,
    )
    assert row is not None
    await connection.execute(f"NOTIFY {ORDERS_CHANNEL}")
    return order_of(row)


async def _by_idempotency_key(
    pool: asyncpg.Pool, merchant_id: int, idempotency_key: str
) -> Order | None:
    row = await pool.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = $1 AND idempotency_key = $2",
        merchant_id,
        idempotency_key,
    )
    return None if row is None else order_of(row)


def _same_order(order: Order, campaign_id: int, quantity: int) -> OrderOut:
    if order.campaign_id != campaign_id or order.quantity != quantity:
        raise Problem(
            Reason.CONFLICT, "This Idempotency-Key was already used for a different order."
        )
    return _out(order)


async def find(pool: asyncpg.Pool, merchant_id: int, order_id: int) -> Order:
    """The merchant's order, or 404 when it is not this merchant's."""
    row = await pool.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND merchant_id = $2",
        order_id,
        merchant_id,
    )
    if row is None:
        raise Problem(Reason.NOT_FOUND, f"No order {order_id} in this account.")
    return order_of(row)


async def get(pool: asyncpg.Pool, merchant_id: int, order_id: int) -> OrderOut:
    return _out(await find(pool, merchant_id, order_id))


ORDERS_PAGE = page_sql(f"SELECT {ORDER_COLUMNS} FROM orders")
ORDERS_OF_CAMPAIGN_PAGE = page_sql(f"SELECT {ORDER_COLUMNS} FROM orders", " AND campaign_id = $4")


async def page(
    pool: asyncpg.Pool, merchant_id: int, campaign_id: int | None, cursor: str | None, limit: int
) -> Page[OrderOut]:
    """A page of the merchant's orders, or of one campaign's, newest first."""
    query, filters = (
        (ORDERS_PAGE, ()) if campaign_id is None else (ORDERS_OF_CAMPAIGN_PAGE, (campaign_id,))
    )
    return await newest_page(
        pool, query, merchant_id, cursor, limit, *filters, out=lambda row: _out(order_of(row))
    )


async def cancel(pool: asyncpg.Pool, merchant_id: int, order_id: int) -> OrderOut:
    """Mark a queued or running order cancelled; a finished one is a conflict."""
    row = await pool.fetchrow(
        "UPDATE orders SET status = 'cancelled', finished_at = now()"
        " WHERE id = $1 AND merchant_id = $2 AND status IN ('queued', 'running')"
        f" RETURNING {ORDER_COLUMNS}",
        order_id,
        merchant_id,
    )
    if row is None:
        current = await find(pool, merchant_id, order_id)
        raise Problem(
            Reason.CONFLICT,
            f"Order {order_id} is {current.status}; only a queued or running order can be"
            " cancelled (void a finished order's codes instead).",
        )
    return _out(order_of(row))
