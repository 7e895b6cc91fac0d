"""Campaign pages: the list (by status), a new campaign, one campaign with its rules, counts
and orders, editing, pausing and resuming, and ordering codes. Everything goes through the
issuance services the API uses."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect

from qrloop.dashboard import forms
from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Role
from qrloop.errors import Problem, Reason
from qrloop.issuance import campaigns, orders
from qrloop.issuance.quotas import Quotas
from qrloop.issuance.routes import StatusFilter
from qrloop.issuance.schemas import CampaignIn, CampaignOut, CampaignPatch, OrderIn
from qrloop.pagination import Cursor
from qrloop.runtime import Runtime
from qrloop.text import text

PAGE_SIZE = 50
STATUSES = ("active", "paused", "ended")
# Idempotency keys of orders placed from a page, apart from those API clients choose.
ORDER_KEY_PREFIX = "dashboard:"


# Any typed field: no NUL (PostgreSQL text cannot hold one), no more than a field needs.
Field = Annotated[str, text(max_length=200, min_length=0)]


class CampaignForm(msgspec.Struct):
    """The campaign form as typed: the face value in major units, moments in the campaign's
    timezone."""

    name: Field = ""
    face_value: Field = ""
    currency: Field = "CNY"
    timezone: Field = "UTC"
    valid_from: Field = ""
    valid_until: Field = ""
    hours: Field = ""


class OrderForm(msgspec.Struct):
    quantity: Field = ""
    idempotency_key: Annotated[str, text(max_length=100, min_length=0)] = ""


CampaignFields = Annotated[CampaignForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
OrderFields = Annotated[OrderForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


def _rules(form: CampaignForm) -> dict[str, Any]:
    """The rules both a new campaign and an edit take, as the API spells them."""
    timezone = forms.zone(form.timezone)
    return {
        "name": form.name.strip(),
        "timezone": timezone.key,
        "valid_from": forms.local_moment(form.valid_from, timezone),
        "valid_until": forms.local_moment(form.valid_until, timezone),
        "hours": forms.optional(form.hours),
    }


def _new_campaign(form: CampaignForm) -> CampaignIn:
    currency = form.currency.strip().upper()
    fields = {
        **_rules(form),
        "currency": currency,
        "face_value": forms.minor_units(form.face_value, currency),
    }
    return forms.convert(fields, CampaignIn)


def _as_form(campaign: CampaignOut) -> CampaignForm:
    return CampaignForm(
        name=campaign.name,
        face_value=str(campaign.face_value),
        currency=campaign.currency,
        timezone=campaign.timezone,
        valid_from=forms.as_local(campaign.valid_from, campaign.timezone),
        valid_until=forms.as_local(campaign.valid_until, campaign.timezone),
        hours=campaign.hours or "",
    )


def _refusal_shown(problem: Problem) -> str:
    """A refusal the form page explains (bad input, a quota); others are answered as they
    are (404, 503...)."""
    if problem.reason not in (Reason.BAD_REQUEST, Reason.QUOTA_EXCEEDED, Reason.CONFLICT):
        raise problem
    return problem.detail


class CampaignPages(Controller):
    path = "/campaigns"
    include_in_schema = False

    @get("/", dependencies=requires(Role.VIEWER))
    async def campaign_list(
        self,
        viewer: Viewer,
        runtime: Runtime,
        status: StatusFilter = None,
        cursor: Cursor = None,
    ) -> Response[str]:
        page = await campaigns.page(
            runtime.pool,
            viewer.merchant_id,
            status=status,
            name_has=None,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        return render(
            viewer, "dashboard/campaigns.html", page=page, shown=status, statuses=STATUSES
        )

    @get("/new", dependencies=requires(Role.MANAGER))
    async def new_campaign(self, viewer: Viewer) -> Response[str]:
        return render(viewer, "dashboard/campaign_new.html", form=CampaignForm(), error=None)

    @post("/", dependencies=requires(Role.MANAGER))
    async def create_campaign(
        self, data: CampaignFields, viewer: Viewer, runtime: Runtime
    ) -> Response[str]:
        try:
            created = await campaigns.create(runtime.pool, viewer.merchant_id, _new_campaign(data))
        except Problem as problem:
            return render(
                viewer,
                "dashboard/campaign_new.html",
                status=problem.status,
                form=data,
                error=_refusal_shown(problem),
            )
        return Redirect(f"/dashboard/campaigns/{created.id}", status_code=303)

    @get("/{campaign_id:int}", dependencies=requires(Role.VIEWER))
    async def campaign(
        self, campaign_id: int, viewer: Viewer, runtime: Runtime, cursor: Cursor = None
    ) -> Response[str]:
        return await self._campaign_page(campaign_id, viewer, runtime, cursor=cursor)

    @post("/{campaign_id:int}", dependencies=requires(Role.MANAGER))
    async def edit_campaign(
        self, campaign_id: int, data: CampaignFields, viewer: Viewer, runtime: Runtime
    ) -> Response[str]:
        """The rules a campaign may change: name, validity, hours, timezone (its value and
        currency are fixed once codes exist)."""
        try:
            patch = forms.convert(_rules(data), CampaignPatch)
            await campaigns.update(runtime.pool, viewer.merchant_id, campaign_id, patch)
        except Problem as problem:
            return await self._campaign_page(
                campaign_id, viewer, runtime, edit=data, error=_refusal_shown(problem)
            )
        return Redirect(f"/dashboard/campaigns/{campaign_id}", status_code=303)

    @post("/{campaign_id:int}/pause", dependencies=requires(Role.MANAGER))
    async def pause(self, campaign_id: int, viewer: Viewer, runtime: Runtime) -> Redirect:
        """Every till refuses the campaign's codes within a second."""
        return await self._switch(campaign_id, viewer, runtime, paused=True)

    @post("/{campaign_id:int}/resume", dependencies=requires(Role.MANAGER))
    async def resume(self, campaign_id: int, viewer: Viewer, runtime: Runtime) -> Redirect:
        return await self._switch(campaign_id, viewer, runtime, paused=False)

    @post("/{campaign_id:int}/orders", dependencies=requires(Role.MANAGER))
    async def order_codes(
        self, campaign_id: int, data: OrderFields, viewer: Viewer, runtime: Runtime
    ) -> Response[str]:
        """The form's idempotency key (made with the page) makes a double submit one order."""
        try:
            quantity = forms.convert({"quantity": _whole(data.quantity)}, OrderIn).quantity
            order = await orders.create(
                runtime.pool,
                runtime.keys.keyring,
                merchant_id=viewer.merchant_id,
                campaign_id=campaign_id,
                quantity=quantity,
                idempotency_key=ORDER_KEY_PREFIX + data.idempotency_key,
                quotas=Quotas.of(runtime.settings),
                claim_base=orders.claim_links_base(runtime.settings.base_url),
            )
        except Problem as problem:
            return await self._campaign_page(
                campaign_id, viewer, runtime, error=_refusal_shown(problem)
            )
        return Redirect(f"/dashboard/orders/{order.id}", status_code=303)

    @staticmethod
    async def _switch(campaign_id: int, viewer: Viewer, runtime: Runtime, paused: bool) -> Redirect:
        patch = CampaignPatch(paused=paused)
        await campaigns.update(runtime.pool, viewer.merchant_id, campaign_id, patch)
        return Redirect(f"/dashboard/campaigns/{campaign_id}", status_code=303)

    @staticmethod
    async def _campaign_page(
        campaign_id: int,
        viewer: Viewer,
        runtime: Runtime,
        *,
        cursor: str | None = None,
        edit: CampaignForm | None = None,
        error: str | None = None,
    ) -> Response[str]:
        campaign = await campaigns.get(runtime.pool, viewer.merchant_id, campaign_id)
        stats = await campaigns.stats(
            runtime.pool,
            runtime.redis,
            runtime.settings.partitions,
            viewer.merchant_id,
            campaign_id,
        )
        page = await orders.page(runtime.pool, viewer.merchant_id, campaign_id, cursor, PAGE_SIZE)
        return render(
            viewer,
            "dashboard/campaign.html",
            status=400 if error else 200,
            campaign=campaign,
            stats=stats,
            orders=page,
            form=edit or _as_form(campaign),
            error=error,
            order_key=secrets.token_urlsafe(16),
            can_manage=viewer.role.covers(Role.MANAGER),
        )


def _whole(text: str) -> int | str:
    """A typed count ("10,000" too) as a number; anything else as typed, for the check to
    refuse."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    return int(cleaned) if cleaned.isdigit() else text
