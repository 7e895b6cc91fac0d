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
from typing import NamedTuple

from asyncpg.pool import PoolConnectionProxy

# The entries of one posting `t` of campaign `c`, with `acceptor` the accepting merchant.
_ENTRIES = """
    CROSS JOIN LATERAL (VALUES
        (c.merchant_id, 'payable', -c.face_value),
        (acceptor.merchant_id, 'receivable', c.face_value),
        (c.merchant_id, 'fees', -c.platform_fee),
        (NULL::bigint, 'platform_revenue', c.platform_fee)
    ) AS e(merchant_id, account, amount)
"""


class Settled(NamedTuple):
    """A redemption row the worker inserted in this transaction: its key, partition key and
    what its ledger entries and webhook event tell."""

    campaign_id: int
    serial: int
    use_no: int
    redeemed_at: datetime
    accepting_merchant_id: int
    store_id: int
    terminal_id: int


# The redemptions this batch inserted, booked from the values the worker holds: no month of the
# redemptions is read back, so the plan cannot depend on how fresh a month's statistics are.
_POST_REDEMPTIONS = f"""
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::timestamptz[],
                         $5::bigint[])
        AS r(campaign_id, serial, use_no, redeemed_at, accepting_merchant_id)
), posted AS (
    INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, redeemed_at, booked_at)
    SELECT 'redemption', campaign_id, serial, use_no, redeemed_at, redeemed_at FROM r
    ON CONFLICT DO NOTHING
    RETURNING id, campaign_id, serial, use_no, redeemed_at
), entries AS (
    INSERT INTO ledger_entries (transaction_id, redeemed_at, merchant_id, account, currency,
                                amount)
    SELECT posted.id, posted.redeemed_at, e.merchant_id, e.account, c.currency, e.amount
    FROM posted
    JOIN r USING (campaign_id, serial, use_no, redeemed_at)
    JOIN campaigns c ON c.id = posted.campaign_id
    CROSS JOIN LATERAL (SELECT r.accepting_merchant_id) AS acceptor(merchant_id)
    {_ENTRIES}
    WHERE e.amount <> 0
)
SELECT campaign_id, serial, use_no, redeemed_at FROM posted
"""

# (campaign_id, serial, use_no, redeemed_at) of the reversals to post (their rows are in the
# reversals table already); rows already posted are skipped by the unique key, so settlement
# retries post nothing twice. $5 and $6 bound the keys' times: however the planner joins, it
# reads only their months. Reversals are few: reading their redemptions back is cheap.
_POST_REVERSALS = f"""
WITH keys AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::timestamptz[])
        AS k(campaign_id, serial, use_no, redeemed_at)
), posted AS (
    INSERT INTO ledger_transactions (kind, campaign_id, serial, use_no, redeemed_at, booked_at)
    SELECT 'reversal', k.campaign_id, k.serial, k.use_no, k.redeemed_at, v.reversed_at
    FROM keys k
    JOIN reversals v USING (campaign_id, serial, use_no, redeemed_at)
    WHERE v.redeemed_at BETWEEN $5 AND $6
    ON CONFLICT DO NOTHING
    RETURNING id, campaign_id, serial, use_no, redeemed_at
), entries AS (
    INSERT INTO ledger_entries (transaction_id, redeemed_at, merchant_id, account, currency,
                                amount)
    SELECT posted.id, posted.redeemed_at, e.merchant_id, e.account, c.currency, -e.amount
    FROM posted
    JOIN redemptions r USING (campaign_id, serial, use_no, redeemed_at)
    JOIN campaigns c ON c.id = posted.campaign_id
    CROSS JOIN LATERAL (SELECT r.accepting_merchant_id) AS acceptor(merchant_id)
    {_ENTRIES}
    WHERE e.amount <> 0 AND r.redeemed_at BETWEEN $5 AND $6
)
SELECT id, redeemed_at FROM posted
"""

Key = tuple[int, int, int, datetime]
# A ledger transaction's key: its id and its partition key.
Booked = tuple[int, datetime]


async def post_reversals(connection: PoolConnectionProxy, keys: list[Key]) -> list[Booked]:
    """Book the reversals of `keys` (campaign, serial, use, redeemed at); return the ledger
    transactions booked now (none for keys booked before)."""
    if not keys:
        return []
    campaigns, serials, uses, times = (list(column) for column in zip(*keys, strict=True))
    rows = await connection.fetch(
        _POST_REVERSALS, campaigns, serials, uses, times, min(times), max(times)
    )
    return [(row["id"], row["redeemed_at"]) for row in rows]


async def post_redemptions(
    connection: PoolConnectionProxy, settled: list[Settled]
) -> list[Settled]:
    """Book redemptions just inserted; return those booked now (all, unless some were booked
    before)."""
    if not settled:
        return []
    columns = [list(column) for column in zip(*settled, strict=True)][:5]
    by_key = {row[:4]: row for row in settled}
    rows = await connection.fetch(_POST_REDEMPTIONS, *columns)
    return [by_key[tuple(row)] for row in rows]
