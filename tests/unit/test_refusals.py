"""Every till refusal is worded in one place (redemption/decide.py): one test per outcome of
the terminal gate and the code state store, per failed verification, per broken campaign
rule, and per refusal of the fast path's own checks."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
import pytest

from qrloop.codes.format import InvalidCode, RetiredKey, RevokedKey
from qrloop.errors import Reason
from qrloop.redemption import decide, outcomes
from qrloop.redemption.outcomes import Outcome, Refused, Use
from qrloop.redemption.store import RedemptionId

USE = Use(store_id=7, at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC))


def test_every_outcome_has_a_refusal() -> None:
    """No outcome is left without its answer (a new one must be worded here)."""
    for outcome in Outcome:
        assert decide.refusal(Refused(outcome)).reason in Reason


def test_disabled() -> None:
    """A disabled terminal or store: 401 with a Bearer challenge, saying it is disabled."""
    problem = decide.refusal(outcomes.DISABLED)
    assert (problem.status, problem.reason) == (401, Reason.UNAUTHORIZED)
    assert problem.detail == "This terminal or its store is disabled."
    assert problem.headers == {"WWW-Authenticate": "Bearer"}


def test_secret_rotated() -> None:
    """A token exchanged for a rotated secret is answered as any unusable token is."""
    problem = decide.refusal(outcomes.SECRET_ROTATED)
    assert (problem.status, problem.reason) == (401, Reason.UNAUTHORIZED)
    assert problem.detail.startswith("Invalid or expired terminal token")
    assert problem.headers == {"WWW-Authenticate": "Bearer"}


def test_rate_limited() -> None:
    """A blocked terminal: 429 with the whole seconds left in Retry-After and the body."""
    problem = decide.refusal(Refused(Outcome.RATE_LIMITED, blocked_until=time.time() + 29.5))
    assert (problem.status, problem.reason) == (429, Reason.RATE_LIMITED)
    assert problem.headers == {"Retry-After": "30"}
    assert problem.extra == {"retry_after": 30}
    assert problem.detail == "Too many invalid scans from this terminal; try again in 30 s."


def test_rate_limited_waits_at_least_a_second() -> None:
    """A block ending now still asks for one second, never zero or less."""
    problem = decide.refusal(Refused(Outcome.RATE_LIMITED, blocked_until=time.time() - 5))
    assert problem.headers == {"Retry-After": "1"}


def test_voided() -> None:
    """A voided code: 409 voided."""
    problem = decide.refusal(outcomes.VOIDED)
    assert (problem.status, problem.reason) == (409, Reason.VOIDED)
    assert problem.detail == "This code was voided by its issuer."


def test_already_redeemed_from_redis() -> None:
    """A used code whose use Redis remembers: 409 with where and when, no `settled`."""
    problem = decide.refusal(Refused(Outcome.ALREADY_REDEEMED, use=USE))
    assert (problem.status, problem.reason) == (409, Reason.ALREADY_REDEEMED)
    assert problem.extra == {"redeemed_at": "2026-11-24T12:00:00+00:00", "store_id": 7}
    assert problem.detail == (
        "This code has already been redeemed. It was used at store 7 at 2026-11-24T12:00:00+00:00."
    )


def test_already_redeemed_settled() -> None:
    """A used code found in the ledger: where and when, and `settled: true` first."""
    problem = decide.already_redeemed(USE, from_ledger=True)
    assert list(problem.extra.items()) == [
        ("settled", True),
        ("redeemed_at", "2026-11-24T12:00:00+00:00"),
        ("store_id", 7),
    ]
    assert problem.detail.endswith("It was used at store 7 at 2026-11-24T12:00:00+00:00.")


def test_already_redeemed_not_settled_yet() -> None:
    """A used code not yet in the ledger: `settled: false`, and the detail says so."""
    problem = decide.already_redeemed(None, from_ledger=True)
    assert (problem.status, problem.reason) == (409, Reason.ALREADY_REDEEMED)
    assert problem.extra == {"settled": False}
    assert problem.detail == (
        "This code has already been redeemed. Where and when is not settled yet."
    )


def test_no_redemption() -> None:
    """A reversal of a redemption that is not there (or another store's): 404 naming it."""
    problem = decide.refusal(outcomes.NO_REDEMPTION, redemption=RedemptionId(3, 41, 2))
    assert (problem.status, problem.reason) == (404, Reason.NOT_FOUND)
    assert problem.detail == "No reversible redemption 3-41-2 at this store."


def test_window_closed() -> None:
    """A reversal after the campaign's window: 409 conflict."""
    problem = decide.refusal(outcomes.WINDOW_CLOSED)
    assert (problem.status, problem.reason) == (409, Reason.CONFLICT)
    assert problem.detail == "The reversal window for this redemption has closed."


def test_unavailable() -> None:
    """The state store cannot answer: 503, retry in a second, nothing accepted meanwhile."""
    problem = decide.refusal(outcomes.UNAVAILABLE)
    assert (problem.status, problem.reason) == (503, Reason.UNAVAILABLE)
    assert problem.headers == {"Retry-After": "1"}
    assert "no code is accepted" in problem.detail


def test_invalid_code() -> None:
    """A malformed or forged code: 422 invalid, with one message whatever was wrong."""
    problem = decide.unverified(InvalidCode())
    assert (problem.status, problem.reason) == (422, Reason.INVALID)
    assert problem.detail == "This is not a valid code."


def test_revoked_key() -> None:
    """A code signed with a revoked key: 422 revoked_key."""
    problem = decide.unverified(RevokedKey())
    assert (problem.status, problem.reason) == (422, Reason.REVOKED_KEY)
    assert problem.detail == "This code's signing key was revoked."


def test_retired_key() -> None:
    """A code signed with a retired key has expired: 403 expired."""
    problem = decide.unverified(RetiredKey())
    assert (problem.status, problem.reason) == (403, Reason.EXPIRED)
    assert problem.detail == "This code's signing key was retired."


@pytest.mark.parametrize(
    ("reason", "detail"),
    [
        (Reason.CAMPAIGN_PAUSED, "The issuer has paused this campaign."),
        (Reason.NOT_YET_VALID, "This code is not valid yet."),
        (Reason.EXPIRED, "This code has expired."),
        (Reason.OUTSIDE_HOURS, "This code cannot be used at this time of day."),
        (Reason.NOT_ACCEPTED_HERE, "This store does not accept this code."),
    ],
)
def test_broken_rule(reason: Reason, detail: str) -> None:
    """Each campaign rule a scan can break has its 403 and its own message."""
    problem = decide.broken_rule(reason)
    assert (problem.status, problem.reason, problem.detail) == (403, reason, detail)


def test_malformed_body() -> None:
    """A redeem body that does not decode: 400 with the decoder's words."""
    with pytest.raises(msgspec.DecodeError) as error:
        msgspec.json.decode(b"{")
    problem = decide.malformed(error.value)
    assert (problem.status, problem.reason) == (400, Reason.BAD_REQUEST)
    assert problem.detail == f"Invalid request body: {error.value}"


def test_too_large() -> None:
    """A body over the limit: 413 naming the limit."""
    problem = decide.too_large(4096)
    assert (problem.status, problem.reason) == (413, Reason.PAYLOAD_TOO_LARGE)
    assert problem.detail == "The body is larger than 4096 bytes."


def test_internal() -> None:
    """What was not foreseen: 500 that tells nothing of the cause."""
    problem = decide.internal()
    assert (problem.status, problem.reason) == (500, Reason.INTERNAL)
    assert problem.detail == "Something went wrong on our side."
