"""The one place that decides whether a till may accept a code, in numbered steps, and the one
place that says why not: every till refusal's problem and message is made here."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never

import asyncpg
import msgspec

from qrloop.accounts.tokens import TerminalClaims, invalid_token
from qrloop.codes.format import CodeRef, InvalidCode, RetiredKey, RevokedKey, parse_input
from qrloop.db import DB_ERRORS
from qrloop.errors import Problem, Reason
from qrloop.keys import Keys
from qrloop.redemption.gate import TerminalGate
from qrloop.redemption.outcomes import Outcome, Refused, Use
from qrloop.redemption.rules import CampaignRules, RulesCache
from qrloop.redemption.store import CodeStateStore, RedemptionId
from qrloop.redemption.store_names import StoreNames

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
        self._store_names = StoreNames(pool)

    async def redeem(self, raw_code: str, nonce: str, terminal: TerminalClaims) -> Redeemed:
        # 1. The terminal may scan: not disabled, not blocked for guessing (process memory).
        self._admit(terminal)
        # 2. Parse and verify the tag in process: a valid tag proves the code was issued.
        ref = await self._verify(raw_code, terminal)
        # 3. The campaign's rules, from the in-process cache.
        rules = await self._campaign(ref)
        # 4. Rules that need no state: paused, validity window, hours, acceptance.
        _enforce(rules, datetime.now(UTC), terminal)
        # 5. One atomic Redis call: check and consume the bit, queue the redemption.
        consumed = await self._store.consume(ref, nonce, terminal, int(time.time() * 1000))
        if isinstance(consumed, Refused):
            raise await self._code_refusal(consumed, ref, rules)
        return Redeemed(consumed.redemption_id, rules, ref, consumed.reversed)

    async def check(self, raw_code: str, terminal: TerminalClaims) -> tuple[CodeRef, CampaignRules]:
        """Steps 1 to 4 of `redeem`, then a read of the code's state; consumes nothing."""
        self._admit(terminal)
        ref = await self._verify(raw_code, terminal)
        rules = await self._campaign(ref)
        _enforce(rules, datetime.now(UTC), terminal)
        refused = await self._store.peek(ref)
        if refused is not None:
            raise await self._code_refusal(refused, ref, rules)
        return ref, rules

    async def reverse(self, redemption_id: str, terminal: TerminalClaims) -> None:
        """Undo a redemption from the store that made it, within the campaign's window."""
        self._admit(terminal)
        redemption = RedemptionId.parse(redemption_id)
        rules = await self._rules_or_none(redemption.campaign_id) if redemption else None
        if redemption is None or rules is None:
            await self._count_guess(terminal)
            raise Problem(Reason.NOT_FOUND, f"No redemption {redemption_id!r}.")
        now_ms = int(time.time() * 1000)
        refused = await self._store.reverse(redemption, terminal, now_ms, rules.reversal_window_ms)
        if refused is None:
            return
        # A reversal of a redemption that is not there is a guess, limited like one.
        if refused.outcome is Outcome.NO_REDEMPTION:
            await self._count_guess(terminal)
        raise refusal(refused, redemption=redemption)

    def _admit(self, terminal: TerminalClaims) -> None:
        refused = self._gate.admit(terminal)
        if refused is not None:
            raise refusal(refused)

    async def _count_guess(self, terminal: TerminalClaims) -> None:
        """Count an invalid scan against the terminal; raise once it is over its limit."""
        refused = await self._gate.count_invalid(terminal.terminal_id)
        if refused is not None:
            raise refusal(refused)

    async def _verify(self, raw_code: str, terminal: TerminalClaims) -> CodeRef:
        try:
            return self._keys.verifier.verify(parse_input(raw_code))
        except RetiredKey as error:
            raise unverified(error) from None
        except (InvalidCode, RevokedKey) as error:
            problem = unverified(error)
        # Failed verifications count against the terminal: guessing is what the limit stops.
        await self._count_guess(terminal)
        raise problem

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

    async def _code_refusal(self, refused: Refused, ref: CodeRef, rules: CampaignRules) -> Problem:
        """The refusal for this code; for a used code, where and when: from Redis while it
        remembers the use, else from the ledger once it is settled there; with the store's
        name and the time in the campaign's timezone, for the cashier."""
        if refused.outcome is not Outcome.ALREADY_REDEEMED:
            return refusal(refused)
        use = refused.use or await self._settled_use(ref)
        problem = already_redeemed(use, from_ledger=refused.use is None)
        if use is not None:
            problem.extra["redeemed_at_local"] = use.at.astimezone(rules.timezone).isoformat()
            name = await self._store_names.name(use.store_id)
            if name is not None:
                problem.extra["store_name"] = name
        return problem

    async def _settled_use(self, ref: CodeRef) -> Use | None:
        try:
            row = await self._pool.fetchrow(_LAST_USE, ref.campaign_id, ref.serial)
        except DB_ERRORS:
            return None
        return None if row is None else Use(row["store_id"], row["redeemed_at"])


def _enforce(rules: CampaignRules, now: datetime, terminal: TerminalClaims) -> None:
    reason = rules.refusal(now, terminal.merchant_id)
    if reason is not None:
        raise broken_rule(reason)


def broken_rule(reason: Reason) -> Problem:
    """The refusal for a campaign rule the scan breaks (CampaignRules.refusal's reasons)."""
    return Problem(reason, _RULE_DETAIL[reason])


def unverified(error: InvalidCode | RevokedKey | RetiredKey) -> Problem:
    """The refusal for a code that does not verify: a retired key's codes have expired; every
    malformed or forged code gets the same answer."""
    if isinstance(error, RetiredKey):
        return Problem(Reason.EXPIRED, "This code's signing key was retired.")
    if isinstance(error, RevokedKey):
        return Problem(Reason.REVOKED_KEY, "This code's signing key was revoked.")
    return Problem(Reason.INVALID, _INVALID)


def refusal(refused: Refused, redemption: RedemptionId | None = None) -> Problem:
    """The till's answer to a gate's or a store's outcome (`redemption`: the one a reversal
    named)."""
    match refused.outcome:
        case Outcome.DISABLED:
            return Problem(
                Reason.UNAUTHORIZED,
                "This terminal or its store is disabled.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        case Outcome.SECRET_ROTATED:
            return invalid_token()
        case Outcome.RATE_LIMITED:
            wait = max(1, math.ceil(refused.blocked_until - time.time()))
            return Problem(
                Reason.RATE_LIMITED,
                f"Too many invalid scans from this terminal; try again in {wait} s.",
                headers={"Retry-After": str(wait)},
                retry_after=wait,
            )
        case Outcome.VOIDED:
            return Problem(Reason.VOIDED, "This code was voided by its issuer.")
        case Outcome.ALREADY_REDEEMED:
            return already_redeemed(refused.use)
        case Outcome.NO_REDEMPTION:
            return Problem(
                Reason.NOT_FOUND, f"No reversible redemption {redemption} at this store."
            )
        case Outcome.WINDOW_CLOSED:
            return Problem(Reason.CONFLICT, "The reversal window for this redemption has closed.")
        case Outcome.UNAVAILABLE:
            return unavailable()
        case _:
            assert_never(refused.outcome)


def already_redeemed(use: Use | None, *, from_ledger: bool = False) -> Problem:
    """A used code's refusal, saying where and when: from Redis while it remembers the use, or
    from the ledger, which also says whether the use is settled there yet."""
    problem = Problem(Reason.ALREADY_REDEEMED, "This code has already been redeemed.")
    if from_ledger:
        problem.extra["settled"] = use is not None
    if use is not None:
        used_at = use.at.isoformat()
        problem.extra.update(redeemed_at=used_at, store_id=use.store_id)
        problem.detail += f" It was used at store {use.store_id} at {used_at}."
    elif from_ledger:
        problem.detail += " Where and when is not settled yet."
    return problem


def unavailable() -> Problem:
    return Problem(
        Reason.UNAVAILABLE,
        "The code state store cannot answer; no code is accepted until it can.",
        headers={"Retry-After": "1"},
    )


def malformed(error: msgspec.DecodeError) -> Problem:
    """A redeem body that does not decode (the fast path's own decoding)."""
    return Problem(Reason.BAD_REQUEST, f"Invalid request body: {error}")


def too_large(limit: int) -> Problem:
    return Problem(Reason.PAYLOAD_TOO_LARGE, f"The body is larger than {limit} bytes.")


def internal() -> Problem:
    return Problem(Reason.INTERNAL, "Something went wrong on our side.")
