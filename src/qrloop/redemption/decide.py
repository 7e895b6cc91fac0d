"""The one place that decides whether a till may accept a code, in numbered steps."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from qrloop.accounts.tokens import TerminalClaims
from qrloop.codes.format import CodeRef, InvalidCode, RetiredKey, RevokedKey, Verifier, parse_input
from qrloop.errors import Problem, Reason
from qrloop.redemption.rules import CampaignRules, RulesCache
from qrloop.redemption.store import CodeStateStore

# One answer for every malformed or forged code: no hint which byte was wrong.
_INVALID = "This is not a valid code."


@dataclass(frozen=True, slots=True)
class Redeemed:
    redemption_id: str
    rules: CampaignRules
    ref: CodeRef


class Redeemer:
    """Verifies, applies the campaign's rules, then consumes in one Redis call."""

    def __init__(
        self, verifier: Verifier, rules: RulesCache, store: CodeStateStore, pool: asyncpg.Pool
    ) -> None:
        self._verifier = verifier
        self._rules = rules
        self._store = store
        self._pool = pool

    async def redeem(self, raw_code: str, nonce: str, terminal: TerminalClaims) -> Redeemed:
        now = datetime.now(UTC)
        # 1. Parse and verify the tag in process: a valid tag proves the code was issued.
        ref = self._verify(raw_code)
        # 2. The campaign's rules, from the in-process cache.
        rules = await self._campaign(ref)
        # 3. Rules that need no state: paused, validity window, hours, acceptance.
        self._enforce(rules, now, terminal)
        # 4. One atomic Redis call: check and consume the bit, queue for settlement.
        try:
            consumed = await self._store.consume(
                ref,
                redemption_id=str(uuid.uuid4()),
                nonce=nonce,
                terminal_id=terminal.terminal_id,
                store_id=terminal.store_id,
                merchant_id=terminal.merchant_id,
                at_ms=int(time.time() * 1000),
            )
        except Problem as refusal:
            if refusal.reason is Reason.ALREADY_REDEEMED:
                await self._describe_earlier_use(refusal, ref)
            raise
        return Redeemed(redemption_id=consumed.redemption_id, rules=rules, ref=ref)

    async def check(self, raw_code: str, terminal: TerminalClaims) -> tuple[CodeRef, CampaignRules]:
        """Steps 1 to 3 of `redeem`, then a read of the code's state; consumes nothing."""
        ref = self._verify(raw_code)
        rules = await self._campaign(ref)
        self._enforce(rules, datetime.now(UTC), terminal)
        state = await self._store.peek(ref)
        if state == "voided":
            raise Problem(Reason.VOIDED, "This code was voided by its issuer.")
        if state == "already_redeemed":
            refusal = Problem(Reason.ALREADY_REDEEMED, "This code has already been redeemed.")
            await self._describe_earlier_use(refusal, ref)
            raise refusal
        return ref, rules

    def _verify(self, raw_code: str) -> CodeRef:
        try:
            return self._verifier.verify(parse_input(raw_code))
        except InvalidCode:
            raise Problem(Reason.INVALID, _INVALID) from None
        except RevokedKey:
            raise Problem(Reason.REVOKED_KEY, "This code's signing key was revoked.") from None
        except RetiredKey:
            raise Problem(Reason.EXPIRED, "This code's signing key was retired.") from None

    async def _campaign(self, ref: CodeRef) -> CampaignRules:
        try:
            rules = await self._rules.get(ref.campaign_id)
        except (OSError, asyncpg.PostgresError):
            raise Problem(
                Reason.UNAVAILABLE,
                "Campaign rules cannot be read right now.",
                headers={"Retry-After": "1"},
            ) from None
        if rules is None:
            raise Problem(Reason.INVALID, _INVALID)
        return rules

    @staticmethod
    def _enforce(rules: CampaignRules, now: datetime, terminal: TerminalClaims) -> None:
        reason = rules.refusal(now, terminal.merchant_id)
        if reason is not None:
            raise Problem(reason, _RULE_DETAIL[reason])

    async def _describe_earlier_use(self, refusal: Problem, ref: CodeRef) -> None:
        """Add when and where the code was used, once settlement has recorded it."""
        try:
            row = await self._pool.fetchrow(
                "SELECT redeemed_at, store_id FROM redemptions"
                " WHERE campaign_id = $1 AND serial = $2",
                ref.campaign_id,
                ref.serial,
            )
        except (OSError, asyncpg.PostgresError):
            row = None
        if row is None:
            refusal.extra["settled"] = False
            refusal.detail += " Where and when is not settled yet."
            return
        refusal.extra.update(
            settled=True, redeemed_at=row["redeemed_at"].isoformat(), store_id=row["store_id"]
        )
        refusal.detail += (
            f" It was used at store {row['store_id']} at {row['redeemed_at'].isoformat()}."
        )


_RULE_DETAIL = {
    Reason.CAMPAIGN_PAUSED: "The issuer has paused this campaign.",
    Reason.NOT_YET_VALID: "This code is not valid yet.",
    Reason.EXPIRED: "This code has expired.",
    Reason.OUTSIDE_HOURS: "This code cannot be used at this time of day.",
    Reason.NOT_ACCEPTED_HERE: "This store does not accept this code.",
}
