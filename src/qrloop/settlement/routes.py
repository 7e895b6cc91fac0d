"""Merchant routes over the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import msgspec
from litestar import Controller, Response, get
from litestar.di import Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema

from qrloop.accounts.guards import current_merchant
from qrloop.runtime import Runtime
from qrloop.settlement import reports


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


@dataclass
class _JsonOrCsv(Operation):
    """The report's OpenAPI entry: its CSV form is listed beside the JSON one, the example
    report in both forms."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            example = msgspec.convert(reports.Settlement.EXAMPLE, reports.Settlement)
            ok.content["text/csv"] = OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING), example=reports.as_csv(example)
            )


class SettlementController(Controller):
    path = "/v1"
    tags = ["settlement"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @get(
        "/settlements",
        summary="What the merchant owes and is owed on a day, by counterparty",
        operation_class=_JsonOrCsv,
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
            return Response(
                reports.as_csv(settlement),
                media_type="text/csv",  # the framework adds the charset
                headers={"Content-Disposition": f'attachment; filename="settlement-{date}.csv"'},
            )
        return Response(settlement)
