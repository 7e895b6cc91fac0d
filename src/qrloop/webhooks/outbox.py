"""Webhook events, written in the transaction that makes them true (an outbox).

An event exists only if what it reports committed, and exactly once: settlement writes the
redemption events for ledger transactions it has just booked, the signer writes
`order.completed` in the transaction that marks the order done. Events are written only for
merchants with an active endpoint subscribed to the type, one delivery per such endpoint.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from asyncpg.pool import PoolConnectionProxy

from qrloop.settlement.ledger import Settled


def public_event_id(event_id: int) -> str:
    """The id receivers see (body `id`, `Qrloop-Event-Id`) and deduplicate on."""
    return f"evt_{event_id}"


class EventType(StrEnum):
    REDEMPTION_CREATED = "redemption.created"
    REDEMPTION_REVERSED = "redemption.reversed"
    ORDER_COMPLETED = "order.completed"


def _fan_out(candidates: str) -> str:
    """One statement: the `candidates` query's (merchant_id, data) rows become events of type
    $2 for merchants subscribed to it, and deliveries retried for $3 seconds. Times are the
    insert's (clock_timestamp()): the writer's transaction may have begun long before."""
    return f"""
WITH candidates AS ({candidates}), events AS (
    INSERT INTO webhook_events (merchant_id, type, data, created_at)
    SELECT c.merchant_id, $2, c.data, clock_timestamp() FROM candidates c
    WHERE EXISTS (
        SELECT 1 FROM webhook_endpoints w
        WHERE w.merchant_id = c.merchant_id AND w.active AND $2 = ANY (w.events)
    )
    RETURNING id, merchant_id
)
INSERT INTO webhook_deliveries (endpoint_id, event_id, next_attempt_at, give_up_at)
SELECT w.id, e.id, clock_timestamp(), clock_timestamp() + make_interval(secs => $3)
FROM events e JOIN webhook_endpoints w
  ON w.merchant_id = e.merchant_id AND w.active AND $2 = ANY (w.events)
"""


# Both sides of a booked redemption or reversal hear of it, the issuer and the acceptor, when
# they have an endpoint subscribed to the type: the JSON is built only for those. `t` is the
# booking (with its redemption's acceptor, store, terminal and time), `c` its campaign.
_BOOKING = """
SELECT m.merchant_id, jsonb_build_object(
    'redemption_id', t.campaign_id || '-' || t.serial || '-' || t.use_no,
    'campaign_id', t.campaign_id, 'serial', t.serial, 'use_no', t.use_no,
    'face_value', c.face_value, 'currency', c.currency,
    'issuer_merchant_id', c.merchant_id, 'accepting_merchant_id', t.accepting_merchant_id,
    'store_id', t.store_id, 'terminal_id', t.terminal_id, 'redeemed_at', t.redeemed_at,
    'reversed_at', t.reversed_at
) AS data
FROM ({bookings}) AS t
JOIN campaigns c ON c.id = t.campaign_id
CROSS JOIN LATERAL (
    SELECT DISTINCT unnest(ARRAY[c.merchant_id, t.accepting_merchant_id])
) AS m(merchant_id)
WHERE m.merchant_id IN (
    SELECT w.merchant_id FROM webhook_endpoints w WHERE w.active AND $2 = ANY (w.events)
)
"""

# Redemptions just booked, from the values the worker holds: nothing is read back.
_CREATED = _fan_out(
    _BOOKING.format(
        bookings="""
SELECT *, NULL::timestamptz AS reversed_at
FROM unnest($1::bigint[], $4::bigint[], $5::integer[], $6::timestamptz[], $7::bigint[],
            $8::bigint[], $9::bigint[])
  AS b(campaign_id, serial, use_no, redeemed_at, accepting_merchant_id, store_id, terminal_id)
"""
    )
)

# Reversals just booked, named by ledger transaction id and partition key; the bookings' times
# bound every month read, however the planner joins.
_REVERSED = _fan_out(
    _BOOKING.format(
        bookings="""
SELECT t.campaign_id, t.serial, t.use_no, t.redeemed_at, r.accepting_merchant_id, r.store_id,
       r.terminal_id, v.reversed_at
FROM unnest($1::bigint[], $4::timestamptz[]) AS booked (id, redeemed_at)
JOIN ledger_transactions t USING (id, redeemed_at)
JOIN redemptions r USING (campaign_id, serial, use_no, redeemed_at)
JOIN reversals v USING (campaign_id, serial, use_no, redeemed_at)
WHERE t.redeemed_at BETWEEN $5 AND $6 AND r.redeemed_at BETWEEN $5 AND $6
  AND v.redeemed_at BETWEEN $5 AND $6
"""
    )
)

_ORDER_DONE = _fan_out("""
SELECT o.merchant_id, jsonb_build_object(
    'order_id', o.id, 'campaign_id', o.campaign_id, 'quantity', o.quantity,
    'first_serial', o.first_serial, 'last_serial', o.first_serial + o.quantity - 1,
    'completed_at', o.finished_at, 'codes_url', $4::text || '/v1/orders/' || o.id || '/codes'
) AS data
FROM orders o WHERE o.id = $1
""")


async def redemptions_created(
    connection: PoolConnectionProxy, booked: list[Settled], retry_seconds: float
) -> None:
    """Events for the redemptions just booked."""
    if booked:
        columns = [list(column) for column in zip(*booked, strict=True)]
        await connection.execute(
            _CREATED, columns[0], EventType.REDEMPTION_CREATED.value, retry_seconds, *columns[1:]
        )


async def reversals_booked(
    connection: PoolConnectionProxy, transactions: list[tuple[int, datetime]], retry_seconds: float
) -> None:
    """Events for the reversals' ledger transactions just booked, each named by its id and its
    partition key (the redemption's time)."""
    if transactions:
        ids, times = (list(column) for column in zip(*transactions, strict=True))
        await connection.execute(
            _REVERSED, ids, EventType.REDEMPTION_REVERSED.value, retry_seconds, times,
            min(times), max(times),
        )  # fmt: skip


async def order_completed(
    connection: PoolConnectionProxy, order_id: int, base_url: str, retry_seconds: float
) -> None:
    """The event for an order marked done in this database transaction."""
    event_type = EventType.ORDER_COMPLETED.value
    await connection.execute(_ORDER_DONE, order_id, event_type, retry_seconds, base_url)
