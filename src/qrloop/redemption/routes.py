"""Till routes: redeem (consume) and check (read only)."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import Provide

from qrloop.accounts.guards import current_terminal
from qrloop.accounts.tokens import TerminalClaims
from qrloop.errors import Problem
from qrloop.redemption.schemas import CheckIn, CheckOut, RedeemIn, RedeemOut
from qrloop.runtime import Runtime


class TillController(Controller):
    path = "/v1"
    tags = ["terminal"]
    dependencies = {"terminal": Provide(current_terminal, sync_to_thread=False)}

    @post("/redeem", status_code=200, summary="Verify and consume a code")
    async def redeem(self, data: RedeemIn, terminal: TerminalClaims, runtime: Runtime) -> RedeemOut:
        """Consumes the code once; the same (terminal, nonce) retried gets the same answer."""
        redeemed = await runtime.redeemer.redeem(data.code, data.nonce, terminal)
        return RedeemOut(
            status="redeemed",
            redemption_id=redeemed.redemption_id,
            campaign_id=redeemed.ref.campaign_id,
            serial=redeemed.ref.serial,
            face_value=redeemed.rules.face_value,
            currency=redeemed.rules.currency,
        )

    @post(
        "/check", status_code=200, summary="Say whether a code would be accepted, consuming nothing"
    )
    async def check(self, data: CheckIn, terminal: TerminalClaims, runtime: Runtime) -> CheckOut:
        try:
            ref, rules = await runtime.redeemer.check(data.code, terminal)
        except Problem as refusal:
            if refusal.status >= 500:
                raise
            return CheckOut(status=refusal.reason.value, detail=refusal.detail)
        return CheckOut(
            status="valid",
            campaign_id=ref.campaign_id,
            face_value=rules.face_value,
            currency=rules.currency,
        )
