"""Merchant routes over the ledger."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

import msgspec
from litestar import Controller, Response, get
from litestar.di import Provide

from qrloop.accounts.guards import current_merchant
from qrloop.openapi import json_or_csv
from qrloop.runtime import Runtime
from qrloop.settlement import reports


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


# The example report in both forms.
_EXAMPLE = reports.as_csv(msgspec.convert(reports.Settlement.EXAMPLE, reports.Settlement))


def csv_download(settlement: reports.Settlement) -> Response[reports.Settlement | str]:
    """The report as a CSV attachment (the API's and the dashboard's download)."""
    return Response(
        reports.as_csv(settlement),
        media_type="text/csv",  # the framework adds the charset
        headers={"Content-Disposition": f'attachment; filename="settlement-{settlement.date}.csv"'},
    )


class SettlementController(Controller):
    path = "/v1"
    tags = ["settlement"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @get(
        "/settlements",
        summary="What the merchant owes and is owed on a day, by counterparty",
        operation_class=json_or_csv(_EXAMPLE),
    )
    async def settlements(
        self,
        date: date,
        merchant_id: int,
        runtime: Runtime,
        format: ReportFormat = ReportFormat.JSON,
    ) -> Response[reports.Settlement | str]:
        """Amounts in minor units, per currency, for the UTC day; `net` > 0: owed to you."""
        settlement = await reports.daily(runtime.pool, merchant_id, date)
        if format is ReportFormat.CSV:
            return csv_download(settlement)
        return Response(settlement)
