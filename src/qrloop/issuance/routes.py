"""Merchant routes for campaigns, orders, exports and voids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.di import Provide
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Schema,
)
from litestar.params import Parameter
from litestar.response import Stream

from qrloop.accounts.guards import current_merchant
from qrloop.codes.verify_pool import VerifierPool
from qrloop.issuance import campaigns, exports, orders, voids
from qrloop.issuance.dependencies import provide_verifiers
from qrloop.issuance.downloads import download
from qrloop.issuance.quotas import Quotas
from qrloop.issuance.schemas import (
    STATUS_RULE,
    CampaignIn,
    CampaignOut,
    CampaignPage,
    CampaignPatch,
    CampaignStats,
    CampaignStatus,
    OrderIn,
    OrderOut,
    OrderPage,
    VoidIn,
    VoidOut,
)
from qrloop.pagination import DEFAULT_LIMIT, Cursor, Limit, by_id
from qrloop.runtime import Runtime
from qrloop.text import NO_NUL

IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        required=False,
        max_length=200,
        pattern=NO_NUL,
        description="Retry-safe order",
    ),
]

StatusFilter = Annotated[
    CampaignStatus | None,
    Parameter(required=False, description=f"Only campaigns with this status: {STATUS_RULE}"),
]
NameFilter = Annotated[
    str | None,
    Parameter(
        required=False,
        max_length=200,
        pattern=NO_NUL,
        description="Only campaigns whose name contains this, ignoring case (% and _ are literal)",
    ),
]
CampaignFilter = Annotated[int | None, by_id("Only this campaign's orders")]


@dataclass
class _Exports(Operation):
    """The export's OpenAPI entry: one media type per `format`, an example of the text ones,
    and the headers a csv export carries."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = {
                media_type.split(";")[0]: _export_media(export_format)
                for export_format, media_type in exports.MEDIA_TYPES.items()
            }
            ok.headers = {
                name: OpenAPIHeader(
                    schema=Schema(type=OpenAPIType.STRING), description=text, example=example
                )
                for name, (text, example) in exports.CSV_HEADERS.items()
            }


def _export_media(export_format: exports.ExportFormat) -> OpenAPIMediaType:
    example = exports.TEXT_EXAMPLES.get(export_format)
    binary = None if example is not None else OpenAPIFormat.BINARY
    return OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=binary), example=example)


class IssuanceController(Controller):
    path = "/v1"
    tags = ["issuance"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @post("/campaigns", status_code=201, summary="Create a campaign")
    async def create_campaign(
        self, data: CampaignIn, merchant_id: int, runtime: Runtime
    ) -> CampaignOut:
        return await campaigns.create(runtime.pool, merchant_id, data)

    @patch("/campaigns/{campaign_id:int}", summary="Change a campaign's rules")
    async def update_campaign(
        self, campaign_id: int, data: CampaignPatch, merchant_id: int, runtime: Runtime
    ) -> CampaignOut:
        """Fields left out stay as they are; every till applies the change within a second."""
        return await campaigns.update(runtime.pool, merchant_id, campaign_id, data)

    @post("/campaigns/{campaign_id:int}/pause", status_code=200, summary="Pause a campaign")
    async def pause_campaign(
        self, campaign_id: int, merchant_id: int, runtime: Runtime
    ) -> CampaignOut:
        patch = CampaignPatch(paused=True)
        return await campaigns.update(runtime.pool, merchant_id, campaign_id, patch)

    @post("/campaigns/{campaign_id:int}/resume", status_code=200, summary="Resume a campaign")
    async def resume_campaign(
        self, campaign_id: int, merchant_id: int, runtime: Runtime
    ) -> CampaignOut:
        patch = CampaignPatch(paused=False)
        return await campaigns.update(runtime.pool, merchant_id, campaign_id, patch)

    @get("/campaigns", summary="The account's campaigns, newest first")
    async def list_campaigns(
        self,
        merchant_id: int,
        runtime: Runtime,
        status: StatusFilter = None,
        q: NameFilter = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> CampaignPage:
        """Filtered by `status` (`ended` once `valid_until` has passed, paused or not; else
        `paused` while paused; else `active`) and by a part of the name (`q`, any case; `%`
        and `_` are plain characters). Pass `next_cursor` back as `cursor`, with the same
        filters, for the next page."""
        return await campaigns.page(
            runtime.pool, merchant_id, status=status, name_has=q, cursor=cursor, limit=limit
        )

    @get("/campaigns/{campaign_id:int}", summary="Read a campaign")
    async def get_campaign(
        self, campaign_id: int, merchant_id: int, runtime: Runtime
    ) -> CampaignOut:
        return await campaigns.get(runtime.pool, merchant_id, campaign_id)

    @get("/campaigns/{campaign_id:int}/stats", summary="Counts of a campaign's codes")
    async def campaign_stats(
        self, campaign_id: int, merchant_id: int, runtime: Runtime
    ) -> CampaignStats:
        return await campaigns.stats(
            runtime.pool, runtime.redis, runtime.settings.partitions, merchant_id, campaign_id
        )

    @post("/campaigns/{campaign_id:int}/orders", status_code=202, summary="Order codes")
    async def create_order(
        self,
        campaign_id: int,
        data: OrderIn,
        merchant_id: int,
        runtime: Runtime,
        idempotency_key: IdempotencyKey = None,
    ) -> OrderOut:
        return await orders.create(
            runtime.pool,
            runtime.keys.keyring,
            merchant_id=merchant_id,
            campaign_id=campaign_id,
            quantity=data.quantity,
            idempotency_key=idempotency_key,
            quotas=Quotas.of(runtime.settings),
            claim_base=orders.claim_links_base(runtime.settings.base_url),
        )

    @get("/campaigns/{campaign_id:int}/orders", summary="A campaign's orders, newest first")
    async def list_campaign_orders(
        self,
        campaign_id: int,
        merchant_id: int,
        runtime: Runtime,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> OrderPage:
        """Each with its progress (`status`, `done` of `quantity`); pass `next_cursor` back as
        `cursor` for the next page."""
        await campaigns.owned(runtime.pool, merchant_id, campaign_id)
        return await orders.page(runtime.pool, merchant_id, campaign_id, cursor, limit)

    @get("/orders", summary="The account's orders, newest first")
    async def list_orders(
        self,
        merchant_id: int,
        runtime: Runtime,
        campaign_id: CampaignFilter = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> OrderPage:
        """Each with its progress (`status`, `done` of `quantity`), of every campaign or of one
        (another merchant's campaign id lists none); pass `next_cursor` back as `cursor` for
        the next page."""
        return await orders.page(runtime.pool, merchant_id, campaign_id, cursor, limit)

    @get("/orders/{order_id:int}", summary="An order's progress")
    async def get_order(self, order_id: int, merchant_id: int, runtime: Runtime) -> OrderOut:
        return await orders.get(runtime.pool, merchant_id, order_id)

    @post("/orders/{order_id:int}/cancel", status_code=200, summary="Cancel an order")
    async def cancel_order(self, order_id: int, merchant_id: int, runtime: Runtime) -> OrderOut:
        """Stops the signer at its next block and voids the whole range: none of its codes
        will be accepted, whether or not they were handed out."""
        order = await orders.cancel(runtime.pool, merchant_id, order_id)
        await voids.void_ranges(
            runtime.redis,
            runtime.settings.partitions,
            [(order.campaign_id, order.first_serial, order.first_serial + order.quantity - 1)],
        )
        return order

    @get(
        "/orders/{order_id:int}/codes",
        summary="Stream an order's codes",
        operation_class=_Exports,
    )
    async def export_codes(
        self,
        order_id: int,
        merchant_id: int,
        runtime: Runtime,
        format: exports.ExportFormat = exports.ExportFormat.CSV,
    ) -> Stream:
        """`csv` and `json` (one object per line) carry code, typed form and claim URL; `png`
        and `svg` are a ZIP of QR images named by serial; `pdf` is printable A4 sheets. Every
        format is derived again on each request; a csv export carries its length and the
        SHA-256 the signer recorded (`ETag`, `Repr-Digest`), the same on every download."""
        return await download(runtime, merchant_id, order_id, format)

    @post(
        "/codes/void",
        status_code=200,
        summary="Void codes, a serial range or an order",
        dependencies={"verifiers": Provide(provide_verifiers, sync_to_thread=False)},
    )
    async def void_codes(
        self, data: VoidIn, merchant_id: int, runtime: Runtime, verifiers: VerifierPool
    ) -> VoidOut:
        """Voided codes answer 409 voided at the till; returns how many were newly voided."""
        ranges = await voids.requested_ranges(
            runtime.pool, verifiers, runtime.keys.keyring, merchant_id, data
        )
        voided = await voids.void_ranges(runtime.redis, runtime.settings.partitions, ranges)
        return VoidOut(voided=voided)
