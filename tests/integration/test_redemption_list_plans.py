"""Every redemption list reads through an index: the plans PostgreSQL makes for them on
100,000 redemptions (benchmarks/redemption_lists.py shows them on 1 M)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from history_rows import Loaded, Scan, chart_queries, list_queries, load, scans_of
from qrloop import db
from qrloop.dashboard import redemption_counts
from qrloop.history import queries
from qrloop.pagination import DEFAULT_LIMIT
from support import Stores, own_stores

ROWS = 100_000
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}
# A month this small is read whole at less cost than through an index.
SMALL_PAGES = 10


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


def _plans(database_url: str, statement: str, args: list[Any]) -> list[Any]:
    """The statement's plans as a prepared statement: the custom plan (for these values) and
    the generic one (for any), which PostgreSQL may switch to after five runs (asyncpg
    prepares every statement)."""

    async def explain() -> list[Any]:
        connection = await asyncpg.connect(database_url, statement_cache_size=0)
        try:
            await connection.execute(f"PREPARE listed AS {statement}")
            values = ", ".join(_literal(arg) for arg in args)
            plans = []
            for mode in ("force_custom_plan", "force_generic_plan"):
                await connection.execute(f"SET plan_cache_mode = {mode}")
                explained = f"EXPLAIN (FORMAT JSON) EXECUTE listed({values})"
                plans.append(json.loads(await connection.fetchval(explained)))
            return plans
        finally:
            await connection.close()

    return asyncio.run(explain())


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):  # a chart's unit ('hour'), from a closed set
        return f"'{value}'"
    return str(int(value))


def _sequential(database_url: str, scans: list[Scan]) -> list[Scan]:
    """The scans that read a table of more than a few pages other than through an index. The
    current month holds as many rows as days of it have passed (none on its first), and a
    handful of rows are rightly read whole."""
    tables = {scan.relation for scan in scans if scan.kind not in INDEX_SCANS}
    if not tables:
        return []

    async def sizes() -> dict[str, int]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT relname, relpages FROM pg_class WHERE relname = ANY($1)", list(tables)
            )
            return {row["relname"]: row["relpages"] for row in rows}
        finally:
            await connection.close()

    pages = asyncio.run(sizes())
    return [s for s in scans if s.kind not in INDEX_SCANS and pages[s.relation] > SMALL_PAGES]


def test_each_list_page_reads_redemptions_through_an_index(
    loaded: tuple[str, Loaded],
) -> None:
    """For every filter (none, a side, a campaign, a store, a terminal, a time range, a page
    deep into the history) the page's plans, custom and generic, scan `redemptions` only
    through indexes, never sequentially."""
    database_url, ids = loaded
    for name, (filters, after) in list_queries(ids).items():
        statement, args = queries.listing(filters, after, DEFAULT_LIMIT + 1)
        for plan in _plans(database_url, statement, args):
            scans = scans_of(plan)
            assert scans, name
            assert _sequential(database_url, scans) == [], (name, scans)


def test_one_redemption_is_read_through_indexes(loaded: tuple[str, Loaded]) -> None:
    """GET /v1/redemptions/{id} reads each month of `redemptions` through an index (its key,
    mostly), never sequentially."""
    database_url, ids = loaded
    statement, args = queries.one(ids.merchant_id, (ids.campaign_id, 1, 1))
    for plan in _plans(database_url, statement, args):
        scans = scans_of(plan)
        assert scans
        assert _sequential(database_url, scans) == [], scans


def test_each_dashboard_chart_counts_through_indexes(loaded: tuple[str, Loaded]) -> None:
    """The redemptions page's two counts (by hour or day, by store), for every filter and
    range it offers up to a year, read `redemptions` only through indexes: the list's own
    conditions, without its order (benchmarks/dashboard_counts.py shows them on 1 M)."""
    database_url, ids = loaded
    for name, filters in chart_queries(ids, datetime.now(UTC)).items():
        assert filters.since is not None and filters.until is not None
        unit = redemption_counts.unit_for(filters.since, filters.until)
        for statement, args in (
            redemption_counts.time_statement(filters, unit),
            redemption_counts.store_statement(filters),
        ):
            for plan in _plans(database_url, statement, args):
                scans = scans_of(plan)
                assert scans, name
                assert _sequential(database_url, scans) == [], (name, scans)
