"""Till routes: redeem (consume), check (read only) and reverse."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import Provide

from qrloop import metrics
from qrloop.accounts.guards import current_terminal
from qrloop.accounts.tokens import TerminalClaims
from qrloop.errors import Problem
from qrloop.redemption import fast
from qrloop.redemption.decide import Redeemer
from qrloop.redemption.dependencies import provide_redeemer
from qrloop.redemption.schemas import (
    CheckIn,
    CheckOut,
    RedeemIn,
    RedeemOut,
    ReverseOut,
    redeemed_body,
)


class TillController(Controller):
    path = "/v1"
    tags = ["terminal"]
    dependencies = {
        "terminal": Provide(current_terminal, sync_to_thread=False),
        "redeemer": Provide(provide_redeemer, sync_to_thread=False),
    }

    @post(
        "/redeem",
        status_code=200,
        summary="Verify and consume a code",
        request_max_body_size=fast.MAX_BODY,
    )
    async def redeem(
        self, data: RedeemIn, terminal: TerminalClaims, redeemer: Redeemer
    ) -> RedeemOut:
        """Consume the code once. The same (terminal, nonce) retried within 24 hours gets the
        original answer; if that redemption was reversed since, it comes back with `status:
        "reversed"` and `reversed: true`, and the code is not consumed again. Served by the
        fast path in redemption/fast.py unless it is disabled; both answer alike."""
        body = redeemed_body(await redeemer.redeem(data.code, data.nonce, terminal))
        metrics.count_answer("/v1/redeem", body.status)
        return body

    @post(
        "/check",
        status_code=200,
        summary="Say whether a code would be accepted now",
        request_max_body_size=fast.MAX_BODY,
    )
    async def check(self, data: CheckIn, terminal: TerminalClaims, redeemer: Redeemer) -> CheckOut:
        """Consumes nothing; `status` is `valid` or the reason a redeem would be refused."""
        try:
            ref, rules = await redeemer.check(data.code, terminal)
        except Problem as refusal:
            if refusal.status in (401, 429) or refusal.status >= 500:
                raise
            return CheckOut(status=refusal.reason.value, detail=refusal.detail)
        return CheckOut(
            status="valid",
            campaign_id=ref.campaign_id,
            face_value=rules.face_value,
            currency=rules.currency,
            issuer_merchant_id=rules.merchant_id,
            issuer_name=rules.issuer_name,
        )

    @post(
        "/redemptions/{redemption_id:str}/reverse",
        status_code=200,
        summary="Reverse a redemption (same store, within the campaign's reversal window)",
    )
    async def reverse(
        self, redemption_id: str, terminal: TerminalClaims, redeemer: Redeemer
    ) -> ReverseOut:
        """The code becomes redeemable again, once. Reversing twice answers the same."""
        await redeemer.reverse(redemption_id, terminal)
        return ReverseOut(status="reversed", redemption_id=redemption_id)
