"""Posting settled redemptions and reversals to the double-entry ledger.

A redemption moves the face value from the issuing merchant's payable to the accepting
merchant's receivable (they differ in an alliance) and books the campaign's platform fee
from the issuer to the platform. A reversal books the contra entries. Each posting is one
ledger transaction whose entries sum to zero, inserted by one statement, which the schema
checks as that statement ends (migrations/005). Every row carries the redemption's time,
the partition key (migrations/013), so each lookup and insert goes to the one month it needs.
"""

from __future__ import annotations

from datetime import datetime

from asyncpg.pool import PoolConnectionProxy

# (campaign_id, serial, use_no, redeemed_at) of the redemptions or reversals to post; rows
# already posted are skipped by the unique key, so settlement retries post nothing twice.
# $7 and $8 bound the keys' times: however the planner joins, it reads only their months.
_POST = """
WITH keys AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $6::timestamptz[])
        AS k(campaign_id, serial, use_no, redeemed_at)
), posted AS (
    INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, redeemed_at, booked_at)
    SELECT $4, r.campaign_id, r.serial, r.use_no, r.redeemed_at,
           coalesce(v.reversed_at, r.redeemed_at)
    FROM keys
    JOIN redemptions r USING (campaign_id, serial, use_no, redeemed_at)
    LEFT JOIN reversals v ON $4 = 'reversal' AND (v.campaign_id, v.serial, v.use_no, v.redeemed_at)
                           = (r.campaign_id, r.serial, r.use_no, r.redeemed_at)
                         AND v.redeemed_at BETWEEN $7 AND $8
    WHERE r.redeemed_at BETWEEN $7 AND $8
    ON CONFLICT DO NOTHING
    RETURNING id, campaign_id, serial, use_no, redeemed_at
), entries AS (
    INSERT INTO ledger_entries (transaction_id, redeemed_at, merchant_id, account, currency,
                                amount)
    SELECT posted.id, posted.redeemed_at, e.merchant_id, e.account, c.currency, e.amount * $5
    FROM posted
    JOIN redemptions r USING (campaign_id, serial, use_no, redeemed_at)
    JOIN campaigns c ON c.id = posted.campaign_id
    CROSS JOIN LATERAL (VALUES
        (c.merchant_id, 'payable', -c.face_value),
        (r.accepting_merchant_id, 'receivable', c.face_value),
        (c.merchant_id, 'fees', -c.platform_fee),
        (NULL::bigint, 'platform_revenue', c.platform_fee)
    ) AS e(merchant_id, account, amount)
    WHERE e.amount <> 0 AND r.redeemed_at BETWEEN $7 AND $8
)
SELECT id, redeemed_at FROM posted
"""

Key = tuple[int, int, int, datetime]
# A ledger transaction's key: its id and its partition key.
Booked = tuple[int, datetime]


async def post(connection: PoolConnectionProxy, kind: str, keys: list[Key]) -> list[Booked]:
    """Book `keys` (campaign, serial, use, redeemed at) as redemptions or as their reversals;
    return the ledger transactions booked now (none for keys booked before)."""
    if not keys:
        return []
    campaigns, serials, uses, times = (list(column) for column in zip(*keys, strict=True))
    sign = 1 if kind == "redemption" else -1
    rows = await connection.fetch(
        _POST, campaigns, serials, uses, kind, sign, times, min(times), max(times)
    )
    return [(row["id"], row["redeemed_at"]) for row in rows]
