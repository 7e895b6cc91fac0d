"""Per-merchant quotas, checked as an order is placed, so one merchant cannot fill the signer's
queue or the code space for everyone else.

* outstanding codes: codes of orders not cancelled or failed, in the merchant's campaigns that
  have not ended (no `valid_until`, or one still ahead). Redeeming or voiding codes does not
  free any; ending the campaign or cancelling the order does. Cheap: one sum over orders.
* orders per day: orders placed in the last 24 hours.

Exports are derived on demand and stored nowhere, so there is no quota of export bytes any more
(migration 017): an order's CSV is a fixed number of bytes per code, which outstanding codes
already bound.

Defaults come from settings (QRLOOP_QUOTA_*); a row in `merchant_quotas` overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop.errors import Problem, Reason
from qrloop.settings import Settings

_USAGE = """
SELECT
    (SELECT coalesce(sum(o.quantity), 0) FROM orders o JOIN campaigns c ON c.id = o.campaign_id
     WHERE o.merchant_id = $1 AND o.status IN ('queued', 'running', 'done')
       AND (c.valid_until IS NULL OR c.valid_until > now()))::bigint AS outstanding_codes,
    (SELECT count(*) FROM orders
     WHERE merchant_id = $1 AND created_at > now() - interval '1 day')::bigint AS orders_per_day,
    q.outstanding_codes AS outstanding_codes_limit,
    q.orders_per_day AS orders_per_day_limit
FROM (SELECT 1) AS one LEFT JOIN merchant_quotas q ON q.merchant_id = $1
"""

# quota name → what it counts, for the refusal's detail.
_NAMES = {
    "outstanding_codes": "outstanding codes",
    "orders_per_day": "orders in 24 hours",
}


@dataclass(frozen=True)
class Quotas:
    """The default limits, from settings."""

    outstanding_codes: int
    orders_per_day: int

    @classmethod
    def of(cls, settings: Settings) -> Quotas:
        return cls(settings.quota_outstanding_codes, settings.quota_orders_per_day)

    async def admit_order(
        self, connection: PoolConnectionProxy, merchant_id: int, quantity: int
    ) -> None:
        """429 quota_exceeded unless the order fits every quota. Call it in the order's
        transaction after locking the merchant's row, so concurrent orders are counted."""
        usage = await connection.fetchrow(_USAGE, merchant_id)
        assert usage is not None
        adds = {"outstanding_codes": quantity, "orders_per_day": 1}
        for quota, added in adds.items():
            limit = usage[f"{quota}_limit"]
            if limit is None:
                limit = getattr(self, quota)
            if usage[quota] + added > limit:
                raise Problem(
                    Reason.QUOTA_EXCEEDED,
                    f"This order would exceed the quota of {limit:,} {_NAMES[quota]}"
                    f" (in use: {usage[quota]:,}; this order adds {added:,}).",
                    quota=quota,
                    limit=limit,
                )


QUOTAS = tuple(_NAMES)


async def override(
    pool: asyncpg.Pool, merchant_id: int, limits: dict[str, int | None]
) -> dict[str, int | None]:
    """Set (a number) or clear (None) the merchant's overrides named in `limits`; return all
    its overrides. Raises LookupError for an unknown merchant."""
    if not await pool.fetchval("SELECT 1 FROM merchants WHERE id = $1", merchant_id):
        raise LookupError(f"no merchant {merchant_id}")
    await pool.execute(
        "INSERT INTO merchant_quotas (merchant_id) VALUES ($1) ON CONFLICT DO NOTHING",
        merchant_id,
    )
    for quota, limit in limits.items():
        assert quota in QUOTAS
        await pool.execute(
            f"UPDATE merchant_quotas SET {quota} = $2 WHERE merchant_id = $1", merchant_id, limit
        )
    row = await pool.fetchrow(
        f"SELECT {', '.join(QUOTAS)} FROM merchant_quotas WHERE merchant_id = $1", merchant_id
    )
    assert row is not None
    return {quota: row[quota] for quota in QUOTAS}
