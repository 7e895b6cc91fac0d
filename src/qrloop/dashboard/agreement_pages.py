"""Acceptance agreement pages: the agreements the merchant is a party to, proposing one for a
campaign of its own, accepting a proposal made to it, ending one. Managers and owners; the
agreements service decides, as for the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect

from qrloop.agreements import service
from qrloop.agreements.schemas import AgreementIn, AgreementOut
from qrloop.dashboard import forms
from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Role
from qrloop.errors import Problem, Reason
from qrloop.issuance import campaigns
from qrloop.runtime import Runtime

CHOICES = 200
# Refusals the page explains beside the form; any other (a 503) is answered as it is.
_SHOWN = (Reason.BAD_REQUEST, Reason.NOT_FOUND, Reason.FORBIDDEN, Reason.CONFLICT)


class ProposalForm(msgspec.Struct):
    campaign_id: str = ""
    acceptor_merchant_id: str = ""


ProposalFields = Annotated[ProposalForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


def _number(text: str) -> int | str:
    cleaned = text.strip()
    return int(cleaned) if cleaned.isascii() and cleaned.isdigit() else cleaned


class AgreementPages(Controller):
    path = "/agreements"
    include_in_schema = False
    dependencies = requires(Role.MANAGER)

    @get("/")
    async def agreements(self, viewer: Viewer, runtime: Runtime) -> Response[str]:
        return await _agreements_page(viewer, runtime)

    @post("/")
    async def propose(
        self, data: ProposalFields, viewer: Viewer, runtime: Runtime
    ) -> Response[str]:
        """Propose that another merchant (by its id) accept one of our campaigns."""
        try:
            fields = {
                "campaign_id": _number(data.campaign_id),
                "acceptor_merchant_id": _number(data.acceptor_merchant_id),
            }
            proposal = forms.convert(fields, AgreementIn)
            await service.propose(
                runtime.pool,
                viewer.merchant_id,
                proposal.campaign_id,
                proposal.acceptor_merchant_id,
            )
        except Problem as problem:
            return await _refused(viewer, runtime, problem, data)
        return Redirect("/dashboard/agreements", status_code=303)

    @post("/{agreement_id:int}/accept")
    async def accept(self, agreement_id: int, viewer: Viewer, runtime: Runtime) -> Response[str]:
        """As the acceptor: our tills accept the campaign's codes within a second."""
        return await _changed(service.accept, agreement_id, viewer, runtime)

    @post("/{agreement_id:int}/end")
    async def end(self, agreement_id: int, viewer: Viewer, runtime: Runtime) -> Response[str]:
        """Either side: the acceptor's tills refuse the campaign's codes within a second."""
        return await _changed(service.end, agreement_id, viewer, runtime)


async def _changed(
    change: Callable[[asyncpg.Pool, int, int], Awaitable[AgreementOut]],
    agreement_id: int,
    viewer: Viewer,
    runtime: Runtime,
) -> Response[str]:
    """The agreement changed by the service (accepted, ended), or the page saying why not."""
    try:
        await change(runtime.pool, viewer.merchant_id, agreement_id)
    except Problem as problem:
        return await _refused(viewer, runtime, problem)
    return Redirect("/dashboard/agreements", status_code=303)


async def _refused(
    viewer: Viewer, runtime: Runtime, problem: Problem, form: ProposalForm | None = None
) -> Response[str]:
    """The page again, saying why (with the refusal's status: 404 for another's id)."""
    if problem.reason not in _SHOWN:
        raise problem
    return await _agreements_page(
        viewer, runtime, error=problem.detail, status=problem.status, form=form
    )


async def _agreements_page(
    viewer: Viewer,
    runtime: Runtime,
    *,
    error: str | None = None,
    status: int = 200,
    form: ProposalForm | None = None,
) -> Response[str]:
    agreements = await service.listed(runtime.pool, viewer.merchant_id)
    own = await campaigns.page(
        runtime.pool, viewer.merchant_id, status=None, name_has=None, cursor=None, limit=CHOICES
    )
    return render(
        viewer,
        "dashboard/agreements.html",
        status=status,
        error=error,
        agreements=agreements,
        campaigns=own.items,
        form=form or ProposalForm(),
    )
