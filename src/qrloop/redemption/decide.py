"""The one place that decides whether a till may accept a code, in numbered steps."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from qrloop.accounts.tokens import TerminalClaims
from qrloop.codes.format import CodeRef, InvalidCode, RetiredKey, RevokedKey, parse_input
from qrloop.db import DB_ERRORS
from qrloop.errors import Problem, Reason
from qrloop.keys import Keys
from qrloop.redemption.gate import TerminalGate
from qrloop.redemption.rules import CampaignRules, RulesCache
from qrloop.redemption.store import CodeStateStore, RedemptionId, already_redeemed, unavailable

# One answer for every malformed or forged code: no hint which byte was wrong.
_INVALID = "This is not a valid code."

_RULE_DETAIL = {
    Reason.CAMPAIGN_PAUSED: "The issuer has paused this campaign.",
    Reason.NOT_YET_VALID: "This code is not valid yet.",
    Reason.EXPIRED: "This code has expired.",
    Reason.OUTSIDE_HOURS: "This code cannot be used at this time of day.",
    Reason.NOT_ACCEPTED_HERE: "This store does not accept this code.",
}


# The code's latest settled use. Redemptions are partitioned by month (migrations/013): the
# months are read newest first, from now (an hour's margin for the API hosts' clocks) back to
# the campaign's creation, and the first month holding a use ends the search.
_LAST_USE = """
SELECT redeemed_at, store_id FROM redemptions
WHERE campaign_id = $1 AND serial = $2
  AND redeemed_at >= (SELECT created_at - interval '1 hour' FROM campaigns WHERE id = $1)
  AND redeemed_at < now() + interval '1 hour'
ORDER BY redeemed_at DESC, use_no DESC LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class Redeemed:
    redemption_id: str
    rules: CampaignRules
    ref: CodeRef
    reversed: bool  # a till's retry of a scan whose redemption was reversed since


class Redeemer:
    """Admits the terminal, verifies, applies the campaign's rules, then consumes atomically."""

    def __init__(
        self,
        keys: Keys,
        rules: RulesCache,
        gate: TerminalGate,
        store: CodeStateStore,
        pool: asyncpg.Pool,
    ) -> None:
        self._keys = keys
        self._rules = rules
        self._gate = gate
        self._store = store
        self._pool = pool

    async def redeem(self, raw_code: str, nonce: str, terminal: TerminalClaims) -> Redeemed:
        # 1. The terminal may scan: not disabled, not blocked for guessing (process memory).
        self._gate.admit(terminal)
        # 2. Parse and verify the tag in process: a valid tag proves the code was issued.
        ref = await self._verify(raw_code, terminal)
        # 3. The campaign's rules, from the in-process cache.
        rules = await self._campaign(ref)
        # 4. Rules that need no state: paused, validity window, hours, acceptance.
        _enforce(rules, datetime.now(UTC), terminal)
        # 5. One atomic Redis call: check and consume the bit, queue the redemption.
        try:
            consumed = await self._store.consume(ref, nonce, terminal, int(time.time() * 1000))
        except Problem as refusal:
            if refusal.reason is Reason.ALREADY_REDEEMED and "store_id" not in refusal.extra:
                await self._describe_settled_use(refusal, ref)
            raise
        return Redeemed(consumed.redemption_id, rules, ref, consumed.reversed)

    async def check(self, raw_code: str, terminal: TerminalClaims) -> tuple[CodeRef, CampaignRules]:
        """Steps 1 to 4 of `redeem`, then a read of the code's state; consumes nothing."""
        self._gate.admit(terminal)
        ref = await self._verify(raw_code, terminal)
        rules = await self._campaign(ref)
        _enforce(rules, datetime.now(UTC), terminal)
        state = await self._store.peek(ref)
        if state == b"voided":
            raise Problem(Reason.VOIDED, "This code was voided by its issuer.")
        if state == b"already_redeemed":
            refusal = already_redeemed()
            await self._describe_settled_use(refusal, ref)
            raise refusal
        return ref, rules

    async def reverse(self, redemption_id: str, terminal: TerminalClaims) -> None:
        """Undo a redemption from the store that made it, within the campaign's window."""
        self._gate.admit(terminal)
        redemption = RedemptionId.parse(redemption_id)
        rules = await self._rules_or_none(redemption.campaign_id) if redemption else None
        try:
            if redemption is None or rules is None:
                raise Problem(Reason.NOT_FOUND, f"No redemption {redemption_id!r}.")
            now_ms = int(time.time() * 1000)
            await self._store.reverse(redemption, terminal, now_ms, rules.reversal_window_ms)
        except Problem as refusal:
            # A reversal of a redemption that is not there is a guess, limited like one.
            if refusal.reason is Reason.NOT_FOUND:
                await self._gate.count_invalid(terminal.terminal_id)
            raise

    async def _verify(self, raw_code: str, terminal: TerminalClaims) -> CodeRef:
        try:
            return self._keys.verifier.verify(parse_input(raw_code))
        except RetiredKey:
            raise Problem(Reason.EXPIRED, "This code's signing key was retired.") from None
        except InvalidCode:
            refusal = Problem(Reason.INVALID, _INVALID)
        except RevokedKey:
            refusal = Problem(Reason.REVOKED_KEY, "This code's signing key was revoked.")
        # Failed verifications count against the terminal: guessing is what the limit stops.
        await self._gate.count_invalid(terminal.terminal_id)
        raise refusal

    async def _rules_or_none(self, campaign_id: int) -> CampaignRules | None:
        try:
            return await self._rules.get(campaign_id)
        except DB_ERRORS:
            raise unavailable() from None

    async def _campaign(self, ref: CodeRef) -> CampaignRules:
        rules = await self._rules_or_none(ref.campaign_id)
        if rules is None:
            raise Problem(Reason.INVALID, _INVALID)
        return rules

    async def _describe_settled_use(self, refusal: Problem, ref: CodeRef) -> None:
        """Add when and where the code was used from the ledger, once it is settled there."""
        try:
            row = await self._pool.fetchrow(_LAST_USE, ref.campaign_id, ref.serial)
        except DB_ERRORS:
            row = None
        if row is None:
            refusal.extra["settled"] = False
            refusal.detail += " Where and when is not settled yet."
            return
        used_at = row["redeemed_at"].isoformat()
        refusal.extra.update(settled=True, redeemed_at=used_at, store_id=row["store_id"])
        refusal.detail += f" It was used at store {row['store_id']} at {used_at}."


def _enforce(rules: CampaignRules, now: datetime, terminal: TerminalClaims) -> None:
    reason = rules.refusal(now, terminal.merchant_id)
    if reason is not None:
        raise Problem(reason, _RULE_DETAIL[reason])
