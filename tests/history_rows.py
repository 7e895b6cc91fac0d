"""Many settled redemptions at once, written straight into a scratch database with
generate_series, for the plans of the redemption lists
(tests/integration/test_redemption_list_plans.py and benchmarks/explain_lists.py).

The shape: `merchants` merchants with 5 stores of 4 terminals each; merchant #1 issues 50
campaigns, every other merchant 10. Each redemption's campaign is drawn evenly from all of them
(by a hash of its number), so #1 issues about 5 % of the redemptions (1,040 campaigns with 100
merchants); 1 in 10 is accepted at a store of the next merchant (an alliance), the rest at one
of the issuer's own; 1 in 100 is reversed. Times spread evenly over the last 180 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import asyncpg

from qrloop.history.queries import Filters, Key
from qrloop.history.schemas import Side

STORES_PER_MERCHANT = 5
TERMINALS_PER_STORE = 4
BIG_MERCHANT_CAMPAIGNS = 50
CAMPAIGNS_PER_MERCHANT = 10

# $1 merchants. Everything is numbered from 1 by position (`n`), whatever ids the database
# hands out, so the redemptions below can pick ids arithmetically.
_ACCOUNTS = f"""
CREATE TEMP TABLE bench_merchants AS
WITH made AS (
    INSERT INTO merchants (name) SELECT 'merchant ' || g FROM generate_series(1, $1) g
    RETURNING id
) SELECT id, row_number() OVER (ORDER BY id) AS n FROM made;

CREATE TEMP TABLE bench_stores AS
WITH made AS (
    INSERT INTO stores (merchant_id, name)
    SELECT m.id, 'store ' || m.n || '.' || k
    FROM bench_merchants m, generate_series(1, {STORES_PER_MERCHANT}) k ORDER BY m.n, k
    RETURNING id, merchant_id
) SELECT id, merchant_id, row_number() OVER (ORDER BY id) AS n FROM made;

CREATE TEMP TABLE bench_terminals AS
WITH made AS (
    INSERT INTO terminals (merchant_id, store_id, name, secret_digest)
    SELECT s.merchant_id, s.id, 'till ' || s.n || '.' || k, '\\x00'::bytea
    FROM bench_stores s, generate_series(1, {TERMINALS_PER_STORE}) k ORDER BY s.n, k
    RETURNING id, store_id
) SELECT id, store_id, row_number() OVER (ORDER BY id) AS n FROM made;

CREATE TEMP TABLE bench_campaigns AS
WITH made AS (
    INSERT INTO campaigns (merchant_id, name, face_value, currency, algorithm)
    SELECT m.id, 'campaign ' || m.n || '.' || k, 500, 'CNY', 'hmac-sha256'
    FROM bench_merchants m,
        generate_series(1, CASE m.n WHEN 1 THEN {BIG_MERCHANT_CAMPAIGNS}
                                    ELSE {CAMPAIGNS_PER_MERCHANT} END) k
    ORDER BY m.n, k
    RETURNING id, merchant_id
) SELECT c.id, m.n AS merchant_n, row_number() OVER (ORDER BY c.id) AS n
FROM made c JOIN bench_merchants m ON m.id = c.merchant_id;
"""

# $1 rows, $2 merchants, $3 campaigns. Stores and terminals are found by position: merchant n's
# stores are (n - 1) * 5 + 1 .. n * 5, store s's terminals (s - 1) * 4 + 1 .. s * 4. Each row's
# campaign, alliance, store and terminal come from separate bits of one hash of g, so that no
# two of them go together.
_REDEMPTIONS = f"""
INSERT INTO redemptions (campaign_id, serial, use_no, terminal_id, store_id,
                         accepting_merchant_id, redeemed_at, stream_entry)
SELECT c.id, g, 1, t.id, s.id, s.merchant_id,
       now() - make_interval(secs => ($1 - g) * 180 * 86400.0 / $1), g || '-0'
FROM generate_series(1, $1) g
CROSS JOIN LATERAL (SELECT hashint8extended(g, 0) AS h) hashed
JOIN bench_campaigns c ON c.n = (h & 1048575) % $3 + 1
CROSS JOIN LATERAL (
    SELECT CASE WHEN (h >> 20 & 1023) % 10 = 0 THEN c.merchant_n % $2 + 1
                ELSE c.merchant_n END AS acceptor_n
) a
JOIN bench_stores s ON s.n = (a.acceptor_n - 1) * {STORES_PER_MERCHANT}
    + (h >> 30 & 1023) % {STORES_PER_MERCHANT} + 1
JOIN bench_terminals t ON t.n = (s.n - 1) * {TERMINALS_PER_STORE}
    + (h >> 40 & 1023) % {TERMINALS_PER_STORE} + 1
"""

# A reversal lives in its redemption's month (migration 013).
_REVERSALS = """
INSERT INTO reversals (campaign_id, serial, use_no, terminal_id, store_id, reversed_at,
                       redeemed_at)
SELECT campaign_id, serial, use_no, terminal_id, store_id, redeemed_at + interval '1 minute',
       redeemed_at
FROM redemptions WHERE serial % 100 = 7
"""
# The monthly partitions the rows fall in (and the next).
_MONTHS = """
SELECT create_month_partitions(month::date)
FROM generate_series(now() - interval '181 days', now() + interval '1 month', interval '1 month')
    AS month
"""


@dataclass(frozen=True)
class Loaded:
    """Ids to ask about: the big merchant, one of its campaigns, stores and terminals, and the
    merchant whose stores accept some of its codes (itself when it is the only one)."""

    merchant_id: int
    campaign_id: int
    store_id: int
    terminal_id: int
    ally_id: int
    ally_store_id: int


async def load(connection: asyncpg.Connection, rows: int, merchants: int = 100) -> Loaded:
    """Write the accounts and `rows` redemptions, then ANALYZE, as a day's autovacuum would."""
    await connection.execute("SELECT set_config('synchronous_commit', 'off', false)")
    async with connection.transaction():
        # Temp tables cannot take parameters in a multi-statement string: one by one.
        for statement in _ACCOUNTS.split(";\n\n"):
            args = (merchants,) if "$1" in statement else ()
            await connection.execute(statement, *args)
        campaigns = await connection.fetchval("SELECT count(*) FROM bench_campaigns")
        await connection.execute(_MONTHS)
        await connection.execute(_REDEMPTIONS, rows, merchants, campaigns)
        await connection.execute(_REVERSALS)
    await connection.execute("ANALYZE")
    first = await connection.fetchrow(
        "SELECT m.id AS merchant_id, c.id AS campaign_id, s.id AS store_id, t.id AS terminal_id"
        " FROM bench_merchants m JOIN bench_campaigns c ON c.merchant_n = m.n"
        " JOIN bench_stores s ON s.merchant_id = m.id JOIN bench_terminals t ON t.store_id = s.id"
        " WHERE m.n = 1 ORDER BY c.n, s.n, t.n LIMIT 1"
    )
    ally = await connection.fetchrow(
        "SELECT m.id AS ally_id, min(s.id) AS ally_store_id FROM bench_merchants m"
        " JOIN bench_stores s ON s.merchant_id = m.id"
        " WHERE m.n = least(2, (SELECT count(*) FROM bench_merchants)) GROUP BY m.id"
    )
    assert first is not None and ally is not None
    return Loaded(**dict(first), **dict(ally))


def list_queries(loaded: Loaded) -> dict[str, tuple[Filters, Key | None]]:
    """Every kind of list a merchant can ask for, as (filters, the key of a cursor), on the
    loaded rows: what the indexes of migration 012 are for."""
    now = datetime.now(UTC)
    merchant = loaded.merchant_id
    deep = (now - timedelta(days=30), 2**40, 2**40, 1)
    return {
        "both sides": (Filters(merchant), None),
        "both sides, 30 days deep": (Filters(merchant), deep),
        "issuer side": (Filters(merchant, side=Side.ISSUER), None),
        "acceptor side": (Filters(merchant, side=Side.ACCEPTOR), None),
        "acceptor side, 30 days deep": (Filters(merchant, side=Side.ACCEPTOR), deep),
        "one campaign": (Filters(merchant, campaign_id=loaded.campaign_id), None),
        "one campaign, 30 days deep": (Filters(merchant, campaign_id=loaded.campaign_id), deep),
        "one store": (Filters(merchant, store_id=loaded.store_id), None),
        "one terminal": (Filters(merchant, terminal_id=loaded.terminal_id), None),
        "an ally's store, issuer side": (
            Filters(merchant, side=Side.ISSUER, store_id=loaded.ally_store_id),
            None,
        ),
        "the last 7 days": (Filters(merchant, since=now - timedelta(days=7)), None),
        "a week 60 days ago, issuer side": (
            Filters(
                merchant,
                side=Side.ISSUER,
                since=now - timedelta(days=67),
                until=now - timedelta(days=60),
            ),
            None,
        ),
        "the ally, both sides": (Filters(loaded.ally_id), None),
    }


def chart_queries(loaded: Loaded, now: datetime) -> dict[str, Filters]:
    """The filters a merchant picks on the dashboard's redemptions page, each with a time
    range (the charts count within one): what its counts must read through indexes."""
    merchant = loaded.merchant_id
    day, week, month, year = (now - timedelta(days=d) for d in (1, 7, 30, 366))
    return {
        "both sides, last 24 h": Filters(merchant, since=day, until=now),
        "both sides, last 7 days": Filters(merchant, since=week, until=now),
        "both sides, last 30 days": Filters(merchant, since=month, until=now),
        "both sides, last 366 days": Filters(merchant, since=year, until=now),
        "issuer side, last 7 days": Filters(merchant, side=Side.ISSUER, since=week, until=now),
        "acceptor side, last 7 days": Filters(merchant, side=Side.ACCEPTOR, since=week, until=now),
        "one campaign, last 30 days": Filters(
            merchant, campaign_id=loaded.campaign_id, since=month, until=now
        ),
        "one store, last 30 days": Filters(
            merchant, store_id=loaded.store_id, since=month, until=now
        ),
        "one terminal, last 7 days": Filters(
            merchant, terminal_id=loaded.terminal_id, since=week, until=now
        ),
    }


class Scan(NamedTuple):
    """One scan of a `redemptions` table (or one month of it) in a plan."""

    kind: str  # "Index Scan", "Seq Scan", ...
    index: str | None
    relation: str


def scans_of(plan: Any) -> list[Scan]:
    """Every scan of a `redemptions` table or partition in an EXPLAIN (FORMAT JSON) plan; a
    bitmap heap scan is named by the index its child reads."""
    found = []
    nodes = [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        children = node.get("Plans", [])
        nodes.extend(children)
        relation = str(node.get("Relation Name", ""))
        if relation.startswith("redemptions"):
            index = node.get("Index Name")
            if node["Node Type"] == "Bitmap Heap Scan":
                index = ",".join(
                    child["Index Name"]
                    for child in children
                    if child["Node Type"] == "Bitmap Index Scan"
                )
            found.append(Scan(node["Node Type"], index, relation))
    return found
