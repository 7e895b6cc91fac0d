"""Campaigns: creation with validated rules, lookup scoped to the merchant, stats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from qrloop import keyspace
from qrloop.agreements import service as agreements
from qrloop.errors import Problem, Reason
from qrloop.issuance.schemas import (
    CampaignIn,
    CampaignOut,
    CampaignPatch,
    CampaignStats,
    CampaignStatus,
)
from qrloop.pagination import Page, newest_page, page_sql
from qrloop.redemption.rules import parse_hours
from qrloop.redis_client import Client
from qrloop.rows import CAMPAIGN_COLUMNS, campaign_of

# Ended wins over paused: an ended campaign cannot be resumed into accepting codes.
_STATUS = "CASE WHEN valid_until <= now() THEN 'ended' WHEN paused THEN 'paused' ELSE 'active' END"
# Allies are read from the acceptance agreements: accepted_merchants are the acceptors that
# consented, proposed_merchants those that have not (yet).
_WITH_ALLIES = (
    f"SELECT {CAMPAIGN_COLUMNS}, {_STATUS} AS status,"
    " ARRAY(SELECT acceptor_merchant_id FROM acceptance_agreements"
    "  WHERE campaign_id = campaigns.id AND status = 'active' ORDER BY 1) AS accepted_merchants,"
    " ARRAY(SELECT acceptor_merchant_id FROM acceptance_agreements"
    "  WHERE campaign_id = campaigns.id AND status = 'proposed' ORDER BY 1) AS proposed_merchants"
    " FROM campaigns"
)
# The rules a patch may change, in the order of the UPDATE's parameters.
_MUTABLE = (
    "name",
    "valid_from",
    "valid_until",
    "hours",
    "timezone",
    "paused",
    "reversal_window_s",
)


def _validate(rules: dict[str, Any]) -> None:
    """Refuse a combination of rules that the till could not apply."""
    try:
        ZoneInfo(rules["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise Problem(Reason.BAD_REQUEST, f"Unknown timezone {rules['timezone']!r}.") from None
    if rules["hours"] is not None:
        try:
            parse_hours(rules["hours"])
        except ValueError as error:
            raise Problem(Reason.BAD_REQUEST, str(error)) from None
    valid_from, valid_until = rules["valid_from"], rules["valid_until"]
    for name, moment in (("valid_from", valid_from), ("valid_until", valid_until)):
        if moment is not None and moment.tzinfo is None:
            raise Problem(
                Reason.BAD_REQUEST, f"{name} needs a UTC offset, e.g. 2026-12-01T00:00:00Z."
            )
    if valid_from and valid_until and valid_until <= valid_from:
        raise Problem(Reason.BAD_REQUEST, "valid_until must be after valid_from.")


def _allies(merchant_id: int, ids: list[int]) -> list[int]:
    """The other merchants asked to accept the codes (the issuer's own stores always do)."""
    return sorted(set(ids) - {merchant_id})


def _no_campaign(campaign_id: int) -> Problem:
    return Problem(Reason.NOT_FOUND, f"No campaign {campaign_id} in this account.")


def _out(row: asyncpg.Record) -> CampaignOut:
    """A campaign read with `_WITH_ALLIES`, as the API shows it."""
    campaign = campaign_of(row)
    return CampaignOut(
        id=campaign.id,
        status=row["status"],
        name=campaign.name,
        face_value=campaign.face_value,
        currency=campaign.currency,
        valid_from=campaign.valid_from,
        valid_until=campaign.valid_until,
        hours=campaign.hours,
        timezone=campaign.timezone,
        accepted_merchants=row["accepted_merchants"],
        proposed_merchants=row["proposed_merchants"],
        algorithm=campaign.algorithm,
        paused=campaign.paused,
        reversal_window_s=campaign.reversal_window_s,
        platform_fee=campaign.platform_fee,
    )


async def create(pool: asyncpg.Pool, merchant_id: int, data: CampaignIn) -> CampaignOut:
    """A new campaign; each merchant in `accepted_merchants` is proposed an agreement."""
    _validate(msgspec.structs.asdict(data))
    async with pool.acquire() as connection, connection.transaction():
        campaign_id = await connection.fetchval(
            "INSERT INTO campaigns (merchant_id, name, face_value, currency, valid_from,"
            " valid_until, hours, timezone, algorithm, reversal_window_s, platform_fee)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            merchant_id,
            data.name,
            data.face_value,
            data.currency,
            data.valid_from,
            data.valid_until,
            data.hours,
            data.timezone,
            data.algorithm,
            data.reversal_window_s,
            data.platform_fee,
        )
        await agreements.propose_to(
            connection, campaign_id, _allies(merchant_id, data.accepted_merchants)
        )
        return await get(connection, merchant_id, campaign_id)


async def update(
    pool: asyncpg.Pool, merchant_id: int, campaign_id: int, patch: CampaignPatch
) -> CampaignOut:
    """Apply the fields present in `patch`; tills see the change within a second."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns"
            " WHERE id = $1 AND merchant_id = $2 FOR UPDATE",
            campaign_id,
            merchant_id,
        )
        if row is None:
            raise _no_campaign(campaign_id)
        current = campaign_of(row)
        changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}
        rules = {name: changes.get(name, getattr(current, name)) for name in _MUTABLE}
        _validate(rules)
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(_MUTABLE, start=2))
        await connection.execute(
            f"UPDATE campaigns SET {assignments} WHERE id = $1",
            campaign_id,
            *(rules[name] for name in _MUTABLE),
        )
        if "accepted_merchants" in changes:
            # The list is the whole set wanted: new names are proposed, the rest ended.
            allies = _allies(merchant_id, changes["accepted_merchants"])
            await agreements.end_all_but(connection, campaign_id, allies)
            await agreements.propose_to(connection, campaign_id, allies)
        return await get(connection, merchant_id, campaign_id)


async def get(
    connection: asyncpg.Pool | PoolConnectionProxy, merchant_id: int, campaign_id: int
) -> CampaignOut:
    row = await connection.fetchrow(
        f"{_WITH_ALLIES} WHERE id = $1 AND merchant_id = $2",
        campaign_id,
        merchant_id,
    )
    if row is None:
        raise _no_campaign(campaign_id)
    return _out(row)


def page_query(status: CampaignStatus | None, name_has: str | None) -> tuple[str, list[str]]:
    """A page's query (`page_sql`), newest first, and the values of its filters ($4 on).

    Filters not asked for are left out of the text (not `$4 IS NULL OR ...`), so the unfiltered
    list is a plain ordered index range under a generic plan too. Filtered, a page reads the
    merchant's campaigns below the cursor by its (merchant_id, id) index and sorts those that
    match: a merchant holds thousands of campaigns, not millions.
    """
    conditions: list[str] = []
    values: list[str] = []
    if status is not None:
        values.append(status)
        conditions.append(f" AND {_STATUS} = ${3 + len(values)}")
    if name_has is not None:
        values.append(containing(name_has))
        conditions.append(f" AND name ILIKE ${3 + len(values)} ESCAPE '\\'")
    return page_sql(_WITH_ALLIES, "".join(conditions)), values


def containing(words: str) -> str:
    """The ILIKE pattern for names containing `words` as typed: % and _ match themselves."""
    escaped = words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def page(
    pool: asyncpg.Pool,
    merchant_id: int,
    *,
    status: CampaignStatus | None,
    name_has: str | None,
    cursor: str | None,
    limit: int,
) -> Page[CampaignOut]:
    """A page of the merchant's campaigns, newest first, with this status and name part."""
    query, filters = page_query(status, name_has)
    return await newest_page(pool, query, merchant_id, cursor, limit, *filters, out=_out)


async def owned(pool: asyncpg.Pool, merchant_id: int, campaign_id: int) -> None:
    """Nothing if the campaign is the merchant's; else 404, as for a campaign nobody has."""
    found = await pool.fetchval(
        "SELECT true FROM campaigns WHERE id = $1 AND merchant_id = $2", campaign_id, merchant_id
    )
    if not found:
        raise _no_campaign(campaign_id)


# Settled = redemptions booked in the ledger, reversed = reversals booked; the amounts are the
# issuer's payable and fees for the campaign, net of reversals. The ledger is partitioned by
# the redemption's month (migrations/013): only the months from the campaign's creation to now
# are read, with an hour's margin for the clocks of the API hosts, which time redemptions.
_LIFE = "BETWEEN c.created_at - interval '1 hour' AND now() + interval '1 hour'"
_STATS = f"""
SELECT c.next_serial, c.currency,
    (SELECT coalesce(sum(quantity), 0)::bigint FROM orders o
     WHERE o.campaign_id = c.id AND o.status = 'done') AS issued,
    t.settled, t.reversed, e.settled_value, e.platform_fees
FROM campaigns c
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE kind = 'redemption') AS settled,
           count(*) FILTER (WHERE kind = 'reversal') AS reversed
    FROM ledger_transactions
    WHERE campaign_id = c.id AND redeemed_at {_LIFE}
) t
CROSS JOIN LATERAL (
    SELECT (-coalesce(sum(amount) FILTER (WHERE account = 'payable'), 0))::bigint
               AS settled_value,
           (-coalesce(sum(amount) FILTER (WHERE account = 'fees'), 0))::bigint AS platform_fees
    FROM ledger_entries le
    JOIN ledger_transactions lt ON (lt.id, lt.redeemed_at) = (le.transaction_id, le.redeemed_at)
    WHERE lt.campaign_id = c.id AND lt.redeemed_at {_LIFE} AND le.redeemed_at {_LIFE}
) e
WHERE c.id = $1 AND c.merchant_id = $2
"""


async def stats(
    pool: asyncpg.Pool, client: Client, partitions: int, merchant_id: int, campaign_id: int
) -> CampaignStats:
    """Live counts from the code state (Redis); settled counts and amounts from the ledger
    (PostgreSQL), so they agree with the settlement reports to the unit."""
    row = await pool.fetchrow(_STATS, campaign_id, merchant_id)
    if row is None:
        raise _no_campaign(campaign_id)
    redeemed, voided, claimed = await _bit_counts(
        client, partitions, campaign_id, row["next_serial"]
    )
    return CampaignStats(
        issued=row["issued"],
        claimed=claimed,
        redeemed=redeemed,
        reversed=row["reversed"],
        voided=voided,
        settled=row["settled"],
        currency=row["currency"],
        settled_value=row["settled_value"],
        platform_fees=row["platform_fees"],
    )


async def _bit_counts(
    client: Client, partitions: int, campaign_id: int, next_serial: int
) -> tuple[int, int, int]:
    first_serials = range(0, next_serial, 1 << keyspace.CHUNK_BITS)
    async with client.pipeline(transaction=False) as pipe:
        for serial in first_serials:
            partition = keyspace.partition_of(campaign_id, serial, partitions)
            pipe.bitcount(keyspace.used_bitmap(partition, campaign_id, serial))
            pipe.bitcount(keyspace.void_bitmap(partition, campaign_id, serial))
            pipe.bitcount(keyspace.claimed_bitmap(partition, campaign_id, serial))
        counts = await pipe.execute()
    return sum(counts[0::3]), sum(counts[1::3]), sum(counts[2::3])


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
