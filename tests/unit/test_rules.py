"""Campaign rules as the till applies them: windows, hours across midnight, acceptance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from qrloop.errors import Reason
from qrloop.redemption.rules import CampaignRules, parse_hours, within_hours

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def rules(**changes: object) -> CampaignRules:
    fields: dict[str, object] = {
        "campaign_id": 1,
        "merchant_id": 10,
        "face_value": 500,
        "currency": "CNY",
        "valid_from": None,
        "valid_until": None,
        "hours": None,
        "timezone": ZoneInfo("UTC"),
        "issuer_name": "Cone & Co",
        "acceptors": frozenset(),
        "paused": False,
        "reversal_window_ms": 900_000,
        **changes,
    }
    return CampaignRules(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "window"),
    [("22:00-06:00", (1320, 360)), ("09:30-17:45", (570, 1065)), ("00:00-24:00", (0, 1440))],
)
def test_parse_hours(text: str, window: tuple[int, int]) -> None:
    """Hours parse to start and end minutes of the day."""
    assert parse_hours(text) == window


@pytest.mark.parametrize("text", ["25:00-06:00", "10:00-10:00", "9:00-10:00", "10:00-24:30", ""])
def test_bad_hours_are_refused(text: str) -> None:
    """Malformed, empty or out-of-day windows raise ValueError."""
    with pytest.raises(ValueError, match="hours"):
        parse_hours(text)


@pytest.mark.parametrize(
    ("minute", "inside"),
    [(22 * 60, True), (23 * 60 + 59, True), (0, True), (5 * 60 + 59, True), (6 * 60, False),
     (12 * 60, False), (21 * 60 + 59, False)],
)  # fmt: skip
def test_window_across_midnight(minute: int, inside: bool) -> None:
    """'22:00-06:00' holds from 22:00 through midnight until 05:59, and not at 06:00."""
    assert within_hours(parse_hours("22:00-06:00"), minute) is inside


def test_hours_apply_in_the_campaign_timezone() -> None:
    """Noon UTC is 20:00 in Shanghai: inside '19:00-21:00' there, outside it in UTC."""
    shanghai = rules(hours=parse_hours("19:00-21:00"), timezone=ZoneInfo("Asia/Shanghai"))
    assert shanghai.refusal(NOON, 10) is None
    assert rules(hours=parse_hours("19:00-21:00")).refusal(NOON, 10) is Reason.OUTSIDE_HOURS


def test_validity_window_edges() -> None:
    """valid_from is inclusive, valid_until exclusive."""
    window = rules(valid_from=NOON, valid_until=NOON + timedelta(hours=1))
    assert window.refusal(NOON - timedelta(microseconds=1), 10) is Reason.NOT_YET_VALID
    assert window.refusal(NOON, 10) is None
    assert window.refusal(NOON + timedelta(hours=1), 10) is Reason.EXPIRED


def test_acceptance_is_the_issuer_and_its_allies() -> None:
    """The issuer's stores and those of merchants with an active agreement accept; anyone
    else is refused."""
    alliance = rules(acceptors=frozenset({20}))
    assert alliance.refusal(NOON, 10) is None
    assert alliance.refusal(NOON, 20) is None
    assert alliance.refusal(NOON, 30) is Reason.NOT_ACCEPTED_HERE


def test_pause_comes_first() -> None:
    """A paused campaign says paused even when other rules would also refuse."""
    assert rules(paused=True, valid_until=NOON).refusal(NOON, 30) is Reason.CAMPAIGN_PAUSED
