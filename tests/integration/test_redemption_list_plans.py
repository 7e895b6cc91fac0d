"""Every redemption list reads through an index: the plans PostgreSQL makes for them on
100,000 redemptions (benchmarks/explain_lists.py shows them on 1 M)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from history_rows import Loaded, list_queries, load, scans_of
from qrloop import db
from qrloop.history import queries
from qrloop.pagination import DEFAULT_LIMIT
from support import Stores, own_stores

ROWS = 100_000
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


@pytest.fixture(scope="module")
def loaded(stores: Stores) -> Iterator[tuple[str, Loaded]]:
    """A fresh, migrated database holding ROWS redemptions, analysed."""

    async def fill(database_url: str) -> Loaded:
        await db.migrate(database_url, progress=lambda _: None)
        connection = await asyncpg.connect(database_url)
        try:
            return await load(connection, ROWS)
        finally:
            await connection.close()

    with own_stores(stores) as own:
        yield own.database_url, asyncio.run(fill(own.database_url))


def _plan(database_url: str, statement: str, args: list[Any]) -> Any:
    async def explain() -> Any:
        connection = await asyncpg.connect(database_url)
        try:
            return json.loads(
                await connection.fetchval("EXPLAIN (FORMAT JSON) " + statement, *args)
            )
        finally:
            await connection.close()

    return asyncio.run(explain())


def test_each_list_page_reads_redemptions_through_an_index(
    loaded: tuple[str, Loaded],
) -> None:
    """For every filter (none, a side, a campaign, a store, a terminal, a time range, a page
    deep into the history) the page's plan scans `redemptions` only through indexes, never
    sequentially."""
    database_url, ids = loaded
    for name, (filters, after) in list_queries(ids).items():
        statement, args = queries.listing(filters, after, DEFAULT_LIMIT + 1)
        scans = scans_of(_plan(database_url, statement, args))
        assert scans, name
        assert {kind for kind, _ in scans} <= INDEX_SCANS, (name, scans)


def test_one_redemption_is_read_through_indexes(loaded: tuple[str, Loaded]) -> None:
    """GET /v1/redemptions/{id} reads each month of `redemptions` through an index (its key,
    mostly), never sequentially."""
    database_url, ids = loaded
    statement, args = queries.one(ids.merchant_id, (ids.campaign_id, 1, 1))
    scans = scans_of(_plan(database_url, statement, args))
    assert scans
    assert {kind for kind, _ in scans} <= INDEX_SCANS, scans
