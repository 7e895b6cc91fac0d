"""The redemptions page's filter form: what a query string picks, how wrong values are told
back instead of refused, and the chart's time buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest

from qrloop.dashboard.redemption_counts import (
    STORES_SHOWN,
    StoreCount,
    Unit,
    buckets,
    collapsed,
    unit_for,
)
from qrloop.dashboard.redemption_filters import DEFAULT_RANGE, LONGEST_RANGE, picked
from qrloop.history.schemas import Side

NOW = datetime(2026, 12, 2, 9, 30, 15, tzinfo=UTC)


def test_an_empty_form_is_both_sides_of_the_last_day() -> None:
    """No value: every redemption of the merchant, as issuer or acceptor, in the day to now."""
    form = picked(7, {}, NOW)
    assert form.errors == []
    assert form.filters.merchant_id == 7
    assert form.filters.side is None
    assert (form.since, form.until) == (NOW - DEFAULT_RANGE, NOW)
    assert (form.filters.since, form.filters.until) == (form.since, form.until)


def test_an_open_range_stays_open_in_links() -> None:
    """The form shows where the default range starts and leaves its end empty ("now"); the
    CSV link and the next page repeat neither, so a download a minute later ends then (a
    link ending at the minute the page was drawn would miss that minute's redemptions)."""
    form = picked(7, {"store": "4"}, NOW)
    assert form.shown["since"] == "2026-12-01T09:30"
    assert form.shown["until"] == ""
    assert parse_qs(form.query()) == {"store": ["4"]}


def test_picked_values_become_the_filters_and_are_shown_back() -> None:
    """Ids, a side and a range as the browser's datetime-local sends them, read as UTC."""
    params = {
        "campaign": "3",
        "store": "4",
        "terminal": "5",
        "side": "acceptor",
        "since": "2026-11-30T08:00",
        "until": "2026-12-01T08:00",
    }
    form = picked(7, params, NOW)
    assert form.errors == []
    filters = form.filters
    assert (filters.campaign_id, filters.store_id, filters.terminal_id) == (3, 4, 5)
    assert filters.side is Side.ACCEPTOR
    assert filters.since == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert filters.until == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert form.shown == params
    assert parse_qs(form.query(cursor="abc")) == {
        **{name: [value] for name, value in params.items()},
        "cursor": ["abc"],
    }


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"campaign": "x"}, "No such campaign."),
        ({"store": "-1"}, "No such store."),
        ({"terminal": str(2**63)}, "No such terminal."),
        ({"store": "٣"}, "No such store."),  # a digit to str.isdigit, not to PostgreSQL
        ({"side": "both-ish"}, "Side is issuer, acceptor or both."),
        ({"since": "yesterday"}, "“From” is not a date and time."),
        ({"until": "2026-13-01T00:00"}, "“To” is not a date and time."),
        ({"since": "0001-01-01T00:00"}, "“From” is not a date and time."),
        ({"since": "2026-12-02T00:00", "until": "2026-12-01T00:00"}, "“From” must be before “to”."),
    ],
)
def test_a_wrong_value_is_told_back_and_left_out(params: dict[str, str], error: str) -> None:
    """A value the form cannot use is named in `errors` and not applied: never an exception
    (which would be a 500), never a query with it."""
    form = picked(7, params, NOW)
    assert form.errors == [error]
    filters = form.filters
    assert (filters.campaign_id, filters.store_id, filters.terminal_id, filters.side) == (
        None,
        None,
        None,
        None,
    )
    assert form.since < form.until
    # Links leave the wrong value out (a valid end of the range stays).
    assert set(parse_qs(form.query())) <= {"until"}


def test_a_range_longer_than_a_year_is_cut_to_its_last_year() -> None:
    """The charts never count more than LONGEST_RANGE: the range keeps its end."""
    form = picked(7, {"since": "2000-01-01T00:00", "until": "2026-12-01T00:00"}, NOW)
    assert len(form.errors) == 1
    assert form.until - form.since == LONGEST_RANGE
    assert form.until == datetime(2026, 12, 1, tzinfo=UTC)


def test_a_week_is_drawn_by_the_hour_and_more_by_the_day() -> None:
    """Up to 7 days: 168 hourly bars at most; longer ranges: one bar a day."""
    assert unit_for(NOW - timedelta(days=7), NOW) is Unit.HOUR
    assert unit_for(NOW - timedelta(days=7, seconds=1), NOW) is Unit.DAY


def test_buckets_cover_every_hour_the_range_touches() -> None:
    """09:30 to 12:10 touches the hours of 09, 10, 11 and 12; days start at midnight UTC."""
    since = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    until = datetime(2026, 12, 2, 12, 10, tzinfo=UTC)
    assert [start.hour for start in buckets(since, until, Unit.HOUR)] == [9, 10, 11, 12]
    days = buckets(since - timedelta(days=2), until, Unit.DAY)
    assert [start.day for start in days] == [30, 1, 2]
    assert all(start.hour == 0 for start in days)


def test_past_a_dozen_stores_the_rest_are_one_bar() -> None:
    """Up to STORES_SHOWN stores each have a bar; beyond, the busiest keep theirs and the
    others are summed into one, so the chart stays readable and its total stays right."""
    few = [StoreCount(i, f"store {i}", 100 - i) for i in range(STORES_SHOWN)]
    assert collapsed(few) == few
    many = [StoreCount(i, f"store {i}", 100 - i) for i in range(STORES_SHOWN + 5)]
    shown = collapsed(many)
    assert len(shown) == STORES_SHOWN
    assert shown[:-1] == many[: STORES_SHOWN - 1]
    rest = many[STORES_SHOWN - 1 :]
    assert shown[-1] == StoreCount(None, f"{len(rest)} other stores", sum(c.count for c in rest))
    assert sum(c.count for c in shown) == sum(c.count for c in many)
