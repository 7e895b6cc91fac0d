"""The redemptions page: filters, two charts (by hour or day, by store), the newest
redemptions a page at a time, and the whole selection as CSV. Everything a viewer may see.

The rows, pages and CSV are GET /v1/redemptions's own (history/service.py), the counts are
over the same selection (redemption_counts.py): one merchant's redemptions, as issuer and as
acceptor, whatever ids the query string names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.response import Stream

from qrloop.accounts import service as accounts
from qrloop.dashboard import charts, redemption_counts
from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render, when
from qrloop.dashboard.redemption_counts import StoreCount, Unit
from qrloop.dashboard.redemption_filters import Picked, picked
from qrloop.dashboard.users import Role
from qrloop.history import service as history
from qrloop.history.routes import csv_download
from qrloop.history.schemas import Side
from qrloop.issuance import campaigns
from qrloop.pagination import Cursor
from qrloop.runtime import Runtime

PAGE_SIZE = 50
# A download holds the merchant's data, as the pages do: no cache keeps it.
NOT_CACHED = {"Cache-Control": "no-store"}
# Choices offered in the form's lists; a merchant with more types an id in the URL.
CHOICES = 200


def _form(request: Request[Any, Any, Any], viewer: Viewer) -> Picked:
    params = {name: str(request.query_params.get(name, "")) for name in request.query_params}
    return picked(viewer.merchant_id, params, datetime.now(UTC))


def hour_chart(counts: list[tuple[datetime, int]], unit: Unit) -> str:
    label = "%H:%M" if unit is Unit.HOUR else "%m-%d"
    total = sum(count for _, count in counts)
    bars = [
        charts.Bar(start.strftime(label), count, f"{when(start)}: {count:,} redemptions")
        for start, count in counts
    ]
    return charts.columns(
        "by-time",
        f"Redemptions by {unit} (UTC)",
        f"{total:,} redemptions in {len(counts)} {unit}s",
        bars,
    )


def store_chart(counts: list[StoreCount]) -> str:
    bars = [
        charts.Bar(store.name, store.count, f"{store.name}: {store.count:,} redemptions")
        for store in counts
    ]
    return charts.rows(
        "by-store",
        "Redemptions by store",
        f"{sum(store.count for store in counts):,} redemptions at {len(counts)} stores",
        bars,
    )


class RedemptionPages(Controller):
    path = "/redemptions"
    include_in_schema = False
    dependencies = requires(Role.VIEWER)

    @get("/")
    async def redemptions(
        self,
        request: Request[Any, Any, Any],
        viewer: Viewer,
        runtime: Runtime,
        cursor: Cursor = None,
    ) -> Response[str]:
        """The page; a form with a wrong value is shown back with what is wrong (400)."""
        form = _form(request, viewer)
        pool = runtime.pool
        unit = redemption_counts.unit_for(form.since, form.until)
        by_time = await redemption_counts.by_time(pool, form.filters, form.since, form.until, unit)
        by_store = await redemption_counts.by_store(pool, form.filters)
        page = await history.page(pool, form.filters, cursor, PAGE_SIZE)
        own_campaigns = await campaigns.page(
            pool, viewer.merchant_id, status=None, name_has=None, cursor=None, limit=CHOICES
        )
        own_stores = await accounts.stores(pool, viewer.merchant_id, None, CHOICES)
        own_terminals = await accounts.terminals(pool, viewer.merchant_id, None, None, CHOICES)
        return render(
            viewer,
            "dashboard/redemptions.html",
            status=400 if form.errors else 200,
            form=form,
            sides=list(Side),
            campaigns=own_campaigns.items,
            stores=own_stores.items,
            terminals=own_terminals.items,
            time_chart=hour_chart(by_time, unit),
            store_chart=store_chart(by_store),
            total=sum(count for _, count in by_time),
            page=page,
            csv_url="/dashboard/redemptions/csv?" + form.query(),
            next_url=(
                "/dashboard/redemptions?" + form.query(cursor=page.next_cursor)
                if page.next_cursor
                else None
            ),
        )

    @get("/csv")
    async def redemptions_csv(
        self, request: Request[Any, Any, Any], viewer: Viewer, runtime: Runtime
    ) -> Stream:
        """Every redemption the form selects, as GET /v1/redemptions?format=csv streams it."""
        download = await csv_download(runtime.pool, _form(request, viewer).filters)
        download.headers.update(NOT_CACHED)
        return download
