"""The redemptions page's filter form, read from its query string: what the merchant picked,
checked, as the history list's Filters and a time range for the charts.

A form is not an API: a wrong value is shown back on the page with what is wrong (the page
answers 400), never a problem+json document. Times are the browser's `datetime-local`
(`2026-12-02T09:00`, no offset), read as UTC, as the page says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from qrloop.history.queries import Filters
from qrloop.history.schemas import Side

DEFAULT_RANGE = timedelta(days=1)
LONGEST_RANGE = timedelta(days=366)
_LARGEST_ID = 2**63 - 1
_ID_FIELDS = ("campaign", "store", "terminal")
# What the form sends, in the order a link back to it names them.
FIELDS = (*_ID_FIELDS, "side", "since", "until")
_LABELS = {"since": "From", "until": "To"}


@dataclass(frozen=True)
class Picked:
    """The form as read: `filters` for the queries (scoped to the merchant), the range the
    charts cover, the values to show in the form, those the merchant gave (that a link
    repeats), and what was wrong with them."""

    filters: Filters
    since: datetime
    until: datetime
    shown: dict[str, str]
    given: dict[str, str]
    errors: list[str] = field(default_factory=list)

    def query(self, **extra: str) -> str:
        """The query string of this form, for the CSV link and the next page. A range the
        merchant left open stays open: the CSV asked for a minute later ends then, not at the
        minute the page was drawn."""
        values = {name: value for name, value in self.given.items() if value}
        return urlencode({**values, **extra})


def local_text(moment: datetime) -> str:
    """A UTC time as a `datetime-local` input shows it, to the minute."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def picked(merchant_id: int, params: Mapping[str, str], now: datetime) -> Picked:
    """The filters of the query string `params` for `merchant_id`; the range defaults to the
    day before `now`, and ends at `now` when no end is given."""
    errors: list[str] = []
    given = {name: params.get(name, "").strip() for name in FIELDS}
    ids = {name: _id(name, given[name], errors) for name in _ID_FIELDS}
    side = _side(given["side"], errors)
    until_given = _moment("until", given["until"], errors)
    since_given = _moment("since", given["since"], errors)
    until = until_given or now
    since = since_given or until - DEFAULT_RANGE
    if since >= until:
        errors.append("“From” must be before “to”.")
        since, since_given = until - DEFAULT_RANGE, None
    elif until - since > LONGEST_RANGE:
        errors.append(f"A range is at most {LONGEST_RANGE.days} days; showing the last ones.")
        since = since_given = until - LONGEST_RANGE
    # Links repeat what the merchant gave and was used: not what was wrong, nor the defaults.
    for name, value in (*ids.items(), ("side", side)):
        if value is None:
            given[name] = ""
    given["since"] = local_text(since_given) if since_given else ""
    given["until"] = local_text(until_given) if until_given else ""
    shown = {**given, "since": local_text(since)}
    filters = Filters(
        merchant_id=merchant_id,
        side=side,
        campaign_id=ids["campaign"],
        store_id=ids["store"],
        terminal_id=ids["terminal"],
        since=since,
        until=until,
    )
    return Picked(filters, since, until, shown, given, errors)


def _id(name: str, text: str, errors: list[str]) -> int | None:
    text = text.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit() and 1 <= int(text) <= _LARGEST_ID:
        return int(text)
    errors.append(f"No such {name}.")
    return None


def _side(text: str, errors: list[str]) -> Side | None:
    if not text:
        return None
    try:
        return Side(text)
    except ValueError:
        errors.append("Side is issuer, acceptor or both.")
        return None


def _moment(name: str, text: str, errors: list[str]) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or len(text) > 40 or not 2000 <= moment.year <= 9998:
        errors.append(f"“{_LABELS[name]}” is not a date and time.")
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
