"""The settlements page: what the merchant owes and is owed on a UTC day, by counterparty,
with the days before it to step through, and the day as CSV: settlement/reports.py's report,
as GET /v1/settlements answers it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from litestar import Controller, Response, get

from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render
from qrloop.dashboard.redemption_pages import NOT_CACHED
from qrloop.dashboard.users import Role
from qrloop.runtime import Runtime
from qrloop.settlement import reports
from qrloop.settlement.routes import csv_download

# Days summarised under the chosen one, each its own (bounded, indexed) daily report.
DAYS_LISTED = 7


def _day(text: str | None) -> tuple[date, str | None]:
    """The day asked for, or today (UTC) with what was wrong with it."""
    today = datetime.now(UTC).date()
    if not text:
        return today, None
    try:
        return date.fromisoformat(text.strip()), None
    except ValueError:
        return today, f"“{text[:40]}” is not a date (YYYY-MM-DD); showing today."


class SettlementPages(Controller):
    path = "/settlements"
    include_in_schema = False
    dependencies = requires(Role.VIEWER)

    @get("/")
    async def settlements(
        self, viewer: Viewer, runtime: Runtime, day: str | None = None
    ) -> Response[str]:
        chosen, error = _day(day)
        report = await reports.daily(runtime.pool, viewer.merchant_id, chosen)
        days = [
            await reports.daily(runtime.pool, viewer.merchant_id, chosen - timedelta(days=back))
            for back in range(1, DAYS_LISTED + 1)
        ]
        return render(
            viewer,
            "dashboard/settlements.html",
            status=400 if error else 200,
            error=error,
            report=report,
            days=days,
            previous=chosen - timedelta(days=1),
            following=chosen + timedelta(days=1),
        )

    @get("/csv")
    async def settlement_csv(
        self, viewer: Viewer, runtime: Runtime, day: date
    ) -> Response[reports.Settlement | str]:
        """The day's report as GET /v1/settlements?format=csv gives it."""
        download = csv_download(await reports.daily(runtime.pool, viewer.merchant_id, day))
        download.headers.update(NOT_CACHED)
        return download
