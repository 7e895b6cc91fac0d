"""Per-merchant quotas, checked as an order is placed, so one merchant cannot fill the disk,
the signer's queue or the code space for everyone else.

* outstanding codes: codes of orders not cancelled or failed, in the merchant's campaigns that
  have not ended (no `valid_until`, or one still ahead). Redeeming or voiding codes does not
  free any; ending the campaign or cancelling the order does. Cheap: one sum over orders.
* orders per day: orders placed in the last 24 hours.
* export bytes: the signer's csv files of the merchant's orders, as they are on disk once every
  queued or running order is signed (each csv row of an algorithm has one fixed length).

Defaults come from settings (QRLOOP_QUOTA_*); a row in `merchant_quotas` overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop.codes.bulk import CSV_HEADER, csv_row_bytes
from qrloop.codes.keyring import Algorithm
from qrloop.errors import Problem, Reason
from qrloop.settings import Settings

_USAGE = """
SELECT
    (SELECT coalesce(sum(o.quantity), 0) FROM orders o JOIN campaigns c ON c.id = o.campaign_id
     WHERE o.merchant_id = $1 AND o.status IN ('queued', 'running', 'done')
       AND (c.valid_until IS NULL OR c.valid_until > now()))::bigint AS outstanding_codes,
    (SELECT count(*) FROM orders
     WHERE merchant_id = $1 AND created_at > now() - interval '1 day')::bigint AS orders_per_day,
    (SELECT coalesce(sum(CASE
         WHEN o.status IN ('queued', 'running') THEN greatest(o.export_bytes, $4::bigint
             + o.quantity * CASE c.algorithm WHEN 'ed25519' THEN $2::bigint ELSE $3::bigint END)
         WHEN o.status = 'cancelled' THEN 0
         ELSE o.export_bytes END), 0)
     FROM orders o JOIN campaigns c ON c.id = o.campaign_id
     WHERE o.merchant_id = $1)::bigint AS export_bytes,
    q.outstanding_codes AS outstanding_codes_limit,
    q.orders_per_day AS orders_per_day_limit,
    q.export_bytes AS export_bytes_limit
FROM (SELECT 1) AS one LEFT JOIN merchant_quotas q ON q.merchant_id = $1
"""

# quota name → what it counts, for the refusal's detail.
_NAMES = {
    "outstanding_codes": "outstanding codes",
    "orders_per_day": "orders in 24 hours",
    "export_bytes": "bytes of export files on disk",
}


@dataclass(frozen=True)
class Quotas:
    """The default limits and what one code adds to an export file, from settings."""

    outstanding_codes: int
    orders_per_day: int
    export_bytes: int
    claim_base: str

    @classmethod
    def of(cls, settings: Settings) -> Quotas:
        return cls(
            settings.quota_outstanding_codes,
            settings.quota_orders_per_day,
            settings.quota_export_bytes,
            settings.base_url + "/c/",
        )

    async def admit_order(
        self,
        connection: PoolConnectionProxy,
        merchant_id: int,
        algorithm: Algorithm,
        quantity: int,
    ) -> None:
        """429 quota_exceeded unless the order fits every quota. Call it in the order's
        transaction after locking the merchant's row, so concurrent orders are counted."""
        ed25519 = csv_row_bytes(Algorithm.ED25519, self.claim_base)
        hmac = csv_row_bytes(Algorithm.HMAC_SHA256, self.claim_base)
        usage = await connection.fetchrow(_USAGE, merchant_id, ed25519, hmac, len(CSV_HEADER))
        assert usage is not None
        adds = {
            "outstanding_codes": quantity,
            "orders_per_day": 1,
            "export_bytes": len(CSV_HEADER) + quantity * csv_row_bytes(algorithm, self.claim_base),
        }
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
