"""An order's page: its progress, live over server-sent events while the signer works, and
its codes to download in every export format once it is done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import msgspec
from litestar import Controller, Response, get
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream

from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Role
from qrloop.issuance import campaigns, exports, orders, progress
from qrloop.issuance.downloads import download
from qrloop.issuance.schemas import OrderOut
from qrloop.runtime import Runtime

# A page left open follows its order this long, then the browser reconnects (EventSource
# does by itself), so no stream is held forever.
FOLLOW_SECONDS = 600
FORMAT_NAMES = {
    exports.ExportFormat.CSV: "CSV (code, typed form, claim link)",
    exports.ExportFormat.JSON: "JSON lines",
    exports.ExportFormat.PDF: "PDF: printable A4 sheets",
    exports.ExportFormat.PNG: "PNG images (ZIP)",
    exports.ExportFormat.SVG: "SVG images (ZIP)",
}


class Progress(msgspec.Struct):
    status: str
    done: int
    quantity: int
    label: str
    finished: bool


def progress_of(order: OrderOut) -> Progress:
    percent = 100 * order.done // max(order.quantity, 1)
    return Progress(
        status=order.status,
        done=order.done,
        quantity=order.quantity,
        label=f"{percent}% · {order.done:,} of {order.quantity:,} codes",
        finished=order.status in progress.FINISHED,
    )


async def _events(
    pool: asyncpg.Pool, merchant_id: int, order_id: int
) -> AsyncIterator[ServerSentEventMessage]:
    """A `progress` event at once and at each change, until the order finishes."""
    last: Progress | None = None
    until = time.monotonic() + FOLLOW_SECONDS
    while True:
        now = progress_of(await orders.get(pool, merchant_id, order_id))
        if now != last:
            yield ServerSentEventMessage(event="progress", data=msgspec.json.encode(now).decode())
            last = now
        if now.finished or time.monotonic() > until:
            return
        await asyncio.sleep(progress.POLL_SECONDS)


class OrderPages(Controller):
    path = "/orders"
    include_in_schema = False

    @get("/{order_id:int}", dependencies=requires(Role.VIEWER))
    async def order(self, order_id: int, viewer: Viewer, runtime: Runtime) -> Response[str]:
        order = await orders.get(runtime.pool, viewer.merchant_id, order_id)
        campaign = await campaigns.get(runtime.pool, viewer.merchant_id, order.campaign_id)
        return render(
            viewer,
            "dashboard/order.html",
            order=order,
            campaign=campaign,
            progress=progress_of(order),
            formats=FORMAT_NAMES,
            can_download=viewer.role.covers(Role.MANAGER),
        )

    @get("/{order_id:int}/events", dependencies=requires(Role.VIEWER))
    async def order_events(
        self, order_id: int, viewer: Viewer, runtime: Runtime
    ) -> ServerSentEvent:
        await orders.get(runtime.pool, viewer.merchant_id, order_id)  # 404 before the stream
        return ServerSentEvent(
            _events(runtime.pool, viewer.merchant_id, order_id),
            headers={"Cache-Control": "no-store"},
        )

    @get("/{order_id:int}/codes", dependencies=requires(Role.MANAGER))
    async def order_codes(
        self,
        order_id: int,
        viewer: Viewer,
        runtime: Runtime,
        format: exports.ExportFormat = exports.ExportFormat.CSV,
    ) -> Stream:
        """The codes are bearer rights: managers and owners only."""
        return await download(runtime, viewer.merchant_id, order_id, format)
