"""Webhook pages: the endpoints, each one's delivery log (status, attempts, last error, when)
with a retry for a failed delivery. Owners only, as the account's integrations are (API
keys too). The webhooks service does the work, as for the API."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.response import Redirect

from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Role
from qrloop.pagination import Cursor
from qrloop.runtime import Runtime
from qrloop.webhooks import service

PAGE_SIZE = 50


class WebhookPages(Controller):
    path = "/webhooks"
    include_in_schema = False
    dependencies = requires(Role.OWNER)

    @get("/")
    async def endpoints(
        self, viewer: Viewer, runtime: Runtime, cursor: Cursor = None
    ) -> Response[str]:
        page = await service.page(runtime.pool, viewer.merchant_id, cursor, PAGE_SIZE)
        return render(viewer, "dashboard/webhooks.html", page=page)

    @get("/{endpoint_id:int}")
    async def endpoint(
        self, endpoint_id: int, viewer: Viewer, runtime: Runtime, retried: int | None = None
    ) -> Response[str]:
        """The newest deliveries to the endpoint; another merchant's endpoint is 404."""
        endpoint = await service.get(runtime.pool, viewer.merchant_id, endpoint_id)
        deliveries = await service.deliveries(
            runtime.pool, viewer.merchant_id, endpoint_id, service.DELIVERY_LOG_LIMIT
        )
        return render(
            viewer,
            "dashboard/webhook.html",
            endpoint=endpoint,
            deliveries=deliveries,
            retried=retried,
        )

    @post("/{endpoint_id:int}/deliveries/{delivery_id:int}/retry")
    async def retry(
        self, endpoint_id: int, delivery_id: int, viewer: Viewer, runtime: Runtime
    ) -> Redirect:
        """Send the delivery again now, with a fresh retry horizon (the API's retry)."""
        await service.redeliver(
            runtime.pool,
            viewer.merchant_id,
            endpoint_id,
            delivery_id,
            runtime.settings.webhook_retry_hours,
        )
        return Redirect(f"/dashboard/webhooks/{endpoint_id}?retried={delivery_id}", status_code=303)
