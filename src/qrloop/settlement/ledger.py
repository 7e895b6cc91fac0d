"""Posting settled redemptions and reversals to the double-entry ledger.

A redemption moves the face value from the issuing merchant's payable to the accepting
merchant's receivable (they differ in an alliance) and books the campaign's platform fee
from the issuer to the platform. A reversal books the contra entries. Each posting is one
ledger transaction whose entries sum to zero, inserted by one statement, which the schema
checks as that statement ends (migrations/005).
"""

from __future__ import annotations

from asyncpg.pool import PoolConnectionProxy

# (campaign_id, serial, use_no) of the redemptions or reversals to post; rows already posted
# are skipped by the unique key, so settlement retries post nothing twice.
_POST = """
WITH keys AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[])
        AS k(campaign_id, serial, use_no)
), posted AS (
    INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, booked_at)
    SELECT $4, r.campaign_id, r.serial, r.use_no, coalesce(v.reversed_at, r.redeemed_at)
    FROM keys
    JOIN redemptions r USING (campaign_id, serial, use_no)
    LEFT JOIN reversals v ON $4 = 'reversal' AND (v.campaign_id, v.serial, v.use_no)
                           = (r.campaign_id, r.serial, r.use_no)
    ON CONFLICT DO NOTHING
    RETURNING id, campaign_id, serial, use_no
), entries AS (
    INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
    SELECT posted.id, e.merchant_id, e.account, c.currency, e.amount * $5
    FROM posted
    JOIN redemptions r USING (campaign_id, serial, use_no)
    JOIN campaigns c ON c.id = posted.campaign_id
    CROSS JOIN LATERAL (VALUES
        (c.merchant_id, 'payable', -c.face_value),
        (r.accepting_merchant_id, 'receivable', c.face_value),
        (c.merchant_id, 'fees', -c.platform_fee),
        (NULL::bigint, 'platform_revenue', c.platform_fee)
    ) AS e(merchant_id, account, amount)
    WHERE e.amount <> 0
)
SELECT id FROM posted
"""

Key = tuple[int, int, int]


async def post(connection: PoolConnectionProxy, kind: str, keys: list[Key]) -> list[int]:
    """Book `keys` (campaign, serial, use) as redemptions or as their reversals; return the
    ids of the ledger transactions booked now (none for keys booked before)."""
    if not keys:
        return []
    campaigns, serials, uses = (list(column) for column in zip(*keys, strict=True))
    sign = 1 if kind == "redemption" else -1
    rows = await connection.fetch(_POST, campaigns, serials, uses, kind, sign)
    return [row["id"] for row in rows]
