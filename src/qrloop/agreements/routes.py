"""Merchant routes for acceptance agreements: propose, list, read, accept, end."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.di import Provide
from litestar.openapi import ResponseSpec

from qrloop.accounts.guards import current_merchant
from qrloop.agreements import service
from qrloop.agreements.schemas import AgreementIn, AgreementOut
from qrloop.runtime import Runtime


class AgreementsController(Controller):
    path = "/v1/agreements"
    tags = ["agreements"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @post(
        "/",
        status_code=201,
        summary="Propose that another merchant accept a campaign",
        responses={
            200: ResponseSpec(
                data_container=AgreementOut,
                description="The agreement already open with that merchant",
            )
        },
    )
    async def propose(
        self, data: AgreementIn, merchant_id: int, runtime: Runtime
    ) -> Response[AgreementOut]:
        """The campaign must be the caller's. Answers 201 with the new proposal, or 200 with
        the agreement already open with that merchant. Any merchant id gets the same answer:
        the agreement becomes active only when that merchant accepts it with its own key."""
        agreement, created = await service.propose(
            runtime.pool, merchant_id, data.campaign_id, data.acceptor_merchant_id
        )
        return Response(agreement, status_code=201 if created else 200)

    @get("/", summary="Agreements the caller is a party to, as issuer or acceptor")
    async def listed(self, merchant_id: int, runtime: Runtime) -> list[AgreementOut]:
        return await service.listed(runtime.pool, merchant_id)

    @get("/{agreement_id:int}", summary="One agreement")
    async def one(self, agreement_id: int, merchant_id: int, runtime: Runtime) -> AgreementOut:
        return await service.get(runtime.pool, merchant_id, agreement_id)

    @post("/{agreement_id:int}/accept", status_code=200, summary="Accept a proposal (acceptor)")
    async def accept(self, agreement_id: int, merchant_id: int, runtime: Runtime) -> AgreementOut:
        """Only the acceptor can accept, and only a proposal; its tills then accept the
        campaign's codes within a second, booking what they redeem as owed by the issuer."""
        return await service.accept(runtime.pool, merchant_id, agreement_id)

    @post("/{agreement_id:int}/end", status_code=200, summary="End an agreement (either side)")
    async def end(self, agreement_id: int, merchant_id: int, runtime: Runtime) -> AgreementOut:
        """The acceptor's tills refuse the campaign's codes within a second; redemptions made
        before stay booked."""
        return await service.end(runtime.pool, merchant_id, agreement_id)
