"""Merchant routes for webhook endpoints and their delivery logs."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.di import Provide
from litestar.params import Parameter

from qrloop.accounts.guards import current_merchant
from qrloop.pagination import DEFAULT_LIMIT, Cursor, Limit
from qrloop.runtime import Runtime
from qrloop.webhooks import service
from qrloop.webhooks.schemas import Delivery, EndpointIn, EndpointOut, EndpointPage, EndpointSecret

DeliveryLimit = Annotated[int, Parameter(ge=1, le=service.DELIVERY_LOG_LIMIT)]


class WebhooksController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @post("/", status_code=201, summary="Register an endpoint; its signing secret is shown once")
    async def create(self, data: EndpointIn, merchant_id: int, runtime: Runtime) -> EndpointSecret:
        """Events are POSTed as JSON, signed the Standard Webhooks way (`webhook-id`,
        `webhook-timestamp`, `webhook-signature: v1,<base64>`): `secret` is what its verifiers
        take. The deprecated `Qrloop-Signature` is sent for this release only. Failed
        deliveries are retried with exponential backoff for 24 hours."""
        return await service.create(
            runtime.pool,
            runtime.keys.keyring,
            merchant_id,
            data,
            runtime.settings.webhook_private_networks,
        )

    @get("/", summary="The merchant's endpoints, newest first")
    async def listed(
        self,
        merchant_id: int,
        runtime: Runtime,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> EndpointPage:
        """Removed endpoints included (`active: false`); pass `next_cursor` back as `cursor`
        for the next page."""
        return await service.page(runtime.pool, merchant_id, cursor, limit)

    @get("/{endpoint_id:int}", summary="One endpoint")
    async def one(self, endpoint_id: int, merchant_id: int, runtime: Runtime) -> EndpointOut:
        return await service.get(runtime.pool, merchant_id, endpoint_id)

    @delete("/{endpoint_id:int}", status_code=200, summary="Stop sending to an endpoint")
    async def remove(self, endpoint_id: int, merchant_id: int, runtime: Runtime) -> EndpointOut:
        return await service.deactivate(runtime.pool, merchant_id, endpoint_id)

    @post("/{endpoint_id:int}/rotate-secret", status_code=200, summary="Replace the secret")
    async def rotate(self, endpoint_id: int, merchant_id: int, runtime: Runtime) -> EndpointSecret:
        return await service.rotate_secret(
            runtime.pool, runtime.keys.keyring, merchant_id, endpoint_id
        )

    @get("/{endpoint_id:int}/deliveries", summary="Delivery log: newest first, with attempts")
    async def deliveries(
        self, endpoint_id: int, merchant_id: int, runtime: Runtime, limit: DeliveryLimit = 50
    ) -> list[Delivery]:
        return await service.deliveries(runtime.pool, merchant_id, endpoint_id, limit)

    @post(
        "/{endpoint_id:int}/deliveries/{delivery_id:int}/retry",
        status_code=202,
        summary="Send a delivery again now",
    )
    async def retry(
        self, endpoint_id: int, delivery_id: int, merchant_id: int, runtime: Runtime
    ) -> None:
        await service.redeliver(
            runtime.pool,
            merchant_id,
            endpoint_id,
            delivery_id,
            runtime.settings.webhook_retry_hours,
        )
