"""The list queries' plans on realistic sizes: each page is read through an index on (owner,
key), bounded by the cursor, and never by a sequential scan of its table or a sort of the
merchant's rows; under a prepared statement's generic plan too (asyncpg prepares every
query, and PostgreSQL may switch to the generic plan after five runs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from qrloop import db
from qrloop.accounts import api_keys
from qrloop.accounts import service as accounts
from qrloop.claim import service as claim
from qrloop.issuance import campaigns, orders
from qrloop.issuance.schemas import CampaignStatus
from qrloop.webhooks import service as webhooks
from support import Stores, own_stores

MERCHANTS = 500
BIG = 1  # the merchant holding a large share of every table
FIRST_PAGE = 2**63 - 1
LIMIT = 101  # a page of 100 and the row that says there is more

# Row i's merchant: one holds a tenth of every table (thousands of rows, many pages), the others
# share the rest (dozens each, fewer than a page).
_OWNER = f"CASE WHEN i % 10 = 0 THEN {BIG} ELSE 1 + i % {MERCHANTS} END"
# Tables of 20,000 to 160,000 rows: sizes at which a planner would rather scan a table than an
# index that did not fit the query.
_FILL = f"""
INSERT INTO merchants (name) SELECT 'm' || i FROM generate_series(1, {MERCHANTS}) i;
INSERT INTO stores (merchant_id, name)
    SELECT {_OWNER}, 's' || i
    FROM generate_series(1, 40000) i;
INSERT INTO terminals (store_id, merchant_id, name, secret_digest)
    SELECT s.id, s.merchant_id, 't', '\\x00' FROM stores s, generate_series(1, 3);
INSERT INTO campaigns (merchant_id, name, face_value, currency, algorithm, paused, valid_until)
    SELECT {_OWNER},
        CASE WHEN i % 7 = 0 THEN 'Free Cone ' ELSE 'Gift ' END || i, 500, 'CNY', 'hmac-sha256',
        i % 5 = 0, CASE WHEN i % 3 = 0 THEN now() - interval '1 day' END
    FROM generate_series(1, 20000) i;
INSERT INTO orders (campaign_id, merchant_id, key_id, first_serial, quantity, status)
    SELECT c.id, c.merchant_id, 1, 0, 10, 'done' FROM campaigns c, generate_series(1, 8);
INSERT INTO orders (campaign_id, merchant_id, key_id, first_serial, quantity, status)
    SELECT 10, {BIG}, 1, 0, 10, 'done' FROM generate_series(1, 1000);
INSERT INTO pools (id, merchant_id, campaign_id, order_id, first_serial, size, per_consumer)
    SELECT 'p' || o.id, o.merchant_id, o.campaign_id, o.id, 0, 10, 1
    FROM orders o WHERE o.id % 8 = 0;
INSERT INTO api_keys (merchant_id, digest, label)
    SELECT {_OWNER},
        sha256(i::text::bytea), 'k'
    FROM generate_series(1, 20000) i;
INSERT INTO webhook_endpoints (merchant_id, url, events, secret_key_id, secret_salt)
    SELECT {_OWNER},
        'https://example.com', '{{}}', 1, '\\x00'
    FROM generate_series(1, 20000) i;
ANALYZE;
"""


async def _fill(database_url: str) -> None:
    await db.migrate(database_url, progress=lambda _: None)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(_FILL)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def database(stores: Stores) -> Iterator[str]:
    """A migrated database of its own, filled and analysed."""
    with own_stores(stores) as own:
        asyncio.run(_fill(own.database_url))
        yield own.database_url


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The plan's nodes that produce the list's rows: not the subplans that compute a column
    (a campaign's allies, sorted from a table of their own)."""
    yield plan
    for child in plan.get("Plans", []):
        if child.get("Parent Relationship") not in ("SubPlan", "InitPlan"):
            yield from _nodes(child)


@dataclass(frozen=True)
class Listing:
    query: str
    table: str
    key: str = "id"
    filters: tuple[object, ...] = ()  # the values after the page's own $1..$3
    # Filtered on what no index holds: the merchant's rows below the cursor are read by index
    # and those that match are sorted, rather than read in order until a page is full.
    in_order: bool = True


def _campaigns(status: CampaignStatus | None, name: str | None) -> Listing:
    query, values = campaigns.page_query(status, name)
    return Listing(query, "campaigns", filters=tuple(values), in_order=not values)


LISTS = {
    "stores": Listing(accounts.STORES_PAGE, "stores"),
    "terminals": Listing(accounts.TERMINALS_PAGE, "terminals"),
    "a store's terminals": Listing(accounts.TERMINALS_OF_STORE_PAGE, "terminals", filters=(10,)),
    "campaigns": _campaigns(None, None),
    "active campaigns": _campaigns("active", None),
    "campaigns by name": _campaigns(None, "cone"),
    "ended campaigns by name": _campaigns("ended", "cone"),
    "orders": Listing(orders.ORDERS_PAGE, "orders"),
    "a campaign's orders": Listing(orders.ORDERS_OF_CAMPAIGN_PAGE, "orders", filters=(10,)),
    "pools": Listing(claim.POOLS_PAGE, "pools", key="seq"),
    "webhooks": Listing(webhooks.ENDPOINTS_PAGE, "webhook_endpoints"),
    "api keys": Listing(api_keys.API_KEYS_PAGE, "api_keys"),
}
INDEX_SCANS = {"Index Scan", "Index Only Scan"}
BITMAP_SCANS = {"Bitmap Heap Scan", "Bitmap Index Scan"}


async def _plans(database_url: str, listing: Listing, page: str) -> list[dict[str, Any]]:
    """The plans of the big merchant's first page, or of one deep in its list (from the key in
    the middle of its rows), as a prepared statement: the custom plan (for these values) and
    the generic one (for any)."""
    connection = await asyncpg.connect(database_url)
    try:
        start = FIRST_PAGE
        if page == "deep":
            start = await connection.fetchval(
                f"SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY {listing.key})"
                f" FROM {listing.table} WHERE merchant_id = $1",
                BIG,
            )
        args = ", ".join(map(_literal, (BIG, start, LIMIT, *listing.filters)))
        await connection.execute(f"PREPARE listed AS {listing.query}")
        plans = []
        for mode in ("force_custom_plan", "force_generic_plan"):
            await connection.execute(f"SET plan_cache_mode = {mode}")
            explained = await connection.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE listed({args})")
            plans.append(json.loads(explained)[0]["Plan"])
        return plans
    finally:
        await connection.close()


@pytest.mark.parametrize("page", ["first", "deep"])
@pytest.mark.parametrize("name", list(LISTS))
def test_a_page_is_read_through_an_index_from_its_cursor(
    database: str, name: str, page: str
) -> None:
    """For the merchant with the most rows, the first page and one deep in its list, under the
    custom and the generic plan: the list's table is read only through an index whose condition
    holds the cursor's bound (no sequential scan, no rows above the cursor), and in the index's
    order (nothing sorted) unless filtered on what no index holds."""
    listing = LISTS[name]
    table, key = listing.table, listing.key
    for plan in asyncio.run(_plans(database, listing, page)):
        nodes = list(_nodes(plan))
        tops = [node for node in nodes if node.get("Relation Name") == table]
        reading = [node for top in tops for node in _nodes(top)]  # a bitmap heap scan's index
        kinds = {node["Node Type"] for node in reading}
        assert kinds and kinds <= INDEX_SCANS | (set() if listing.in_order else BITMAP_SCANS), plan
        bounded = [node for node in reading if "Index Cond" in node]
        assert bounded and all(f"{key} < " in node["Index Cond"] for node in bounded), plan
        sorts = [node for node in nodes if node["Node Type"] in ("Sort", "Incremental Sort")]
        assert not (listing.in_order and sorts), plan
