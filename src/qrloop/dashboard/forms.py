"""Reading dashboard forms into the API's own request bodies, so a form is validated by the
same rules as the JSON API (and by the same services after that)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from qrloop.claim.pages import exponent_of
from qrloop.errors import Problem, Reason

T = TypeVar("T")


def convert(fields: dict[str, Any], into: type[T]) -> T:
    """`fields` as `into` (a msgspec struct of the API), or 400 saying which field is wrong."""
    try:
        return msgspec.convert(fields, into)
    except msgspec.ValidationError as error:
        field = str(error).rpartition("$.")[2] or "the form"
        raise Problem(Reason.BAD_REQUEST, f"Check {field.replace('_', ' ')}: {error}") from None


def minor_units(amount: str, currency: str) -> int:
    """A face value typed in major units ("5.00" CNY) as minor units (500)."""
    try:
        value = Decimal(amount.strip()) * 10 ** exponent_of(currency)
    except InvalidOperation:
        raise Problem(Reason.BAD_REQUEST, f"{amount!r} is not an amount.") from None
    if value != value.to_integral_value() or value < 0:
        raise Problem(
            Reason.BAD_REQUEST,
            f"{amount!r} is not an amount of {currency} (at most {exponent_of(currency)}"
            " digits after the point, not negative).",
        )
    return int(value)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip() or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise Problem(Reason.BAD_REQUEST, f"Unknown timezone {name!r}.") from None


def local_moment(text: str, timezone: ZoneInfo) -> datetime | None:
    """A `datetime-local` field (no offset: the campaign's timezone is meant); empty is None."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Problem(Reason.BAD_REQUEST, f"{text!r} is not a date and time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone)


def as_local(moment: datetime | None, timezone: str) -> str:
    """A stored moment as a `datetime-local` field's value, in the campaign's timezone."""
    if moment is None:
        return ""
    return moment.astimezone(zone(timezone)).strftime("%Y-%m-%dT%H:%M")


def optional(text: str) -> str | None:
    return text.strip() or None
