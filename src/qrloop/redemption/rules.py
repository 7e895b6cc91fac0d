"""Campaign rules as the till sees them, cached in process for one second."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from qrloop.errors import Reason

RULES_TTL_SECONDS = 1.0
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


def parse_hours(text: str) -> tuple[int, int]:
    """'22:00-06:00' → (1320, 360): start and end minute of the daily window.

    A window whose end is before its start runs across midnight. Raises ValueError.
    """
    match = _HOURS.match(text)
    if not match:
        raise ValueError("hours must look like 'HH:MM-HH:MM', e.g. '22:00-06:00'")
    start = int(match[1]) * 60 + int(match[2])
    end = int(match[3]) * 60 + int(match[4])
    if end > 24 * 60 or start == end:
        raise ValueError("hours must be a non-empty window within one day")
    return start, end


def within_hours(window: tuple[int, int], minute_of_day: int) -> bool:
    start, end = window
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end


@dataclass(frozen=True, slots=True)
class CampaignRules:
    """What the till must check before consuming a code of this campaign."""

    campaign_id: int
    merchant_id: int
    face_value: int
    currency: str
    valid_from: datetime | None
    valid_until: datetime | None
    hours: tuple[int, int] | None
    timezone: ZoneInfo
    accepted_merchants: frozenset[int]
    paused: bool

    def refusal(self, now: datetime, accepting_merchant_id: int) -> Reason | None:
        """The first rule `now` at this merchant's store breaks, or None."""
        if self.paused:
            return Reason.CAMPAIGN_PAUSED
        if self.valid_from is not None and now < self.valid_from:
            return Reason.NOT_YET_VALID
        if self.valid_until is not None and now >= self.valid_until:
            return Reason.EXPIRED
        if self.hours is not None:
            local = now.astimezone(self.timezone)
            if not within_hours(self.hours, local.hour * 60 + local.minute):
                return Reason.OUTSIDE_HOURS
        if accepting_merchant_id != self.merchant_id and (
            accepting_merchant_id not in self.accepted_merchants
        ):
            return Reason.NOT_ACCEPTED_HERE
        return None


class RulesCache:
    """Campaign rules by id, re-read from PostgreSQL at most once a second per campaign."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._entries: dict[int, tuple[float, CampaignRules | None]] = {}

    async def get(self, campaign_id: int) -> CampaignRules | None:
        entry = self._entries.get(campaign_id)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        rules = await self._load(campaign_id)
        self._entries[campaign_id] = (now + RULES_TTL_SECONDS, rules)
        return rules

    async def _load(self, campaign_id: int) -> CampaignRules | None:
        row = await self._pool.fetchrow(
            "SELECT id, merchant_id, face_value, currency, valid_from, valid_until, hours,"
            " timezone, accepted_merchants, paused FROM campaigns WHERE id = $1",
            campaign_id,
        )
        if row is None:
            return None
        return CampaignRules(
            campaign_id=row["id"],
            merchant_id=row["merchant_id"],
            face_value=row["face_value"],
            currency=row["currency"],
            valid_from=row["valid_from"],
            valid_until=row["valid_until"],
            hours=parse_hours(row["hours"]) if row["hours"] else None,
            timezone=ZoneInfo(row["timezone"]),
            accepted_merchants=frozenset(row["accepted_merchants"]),
            paused=row["paused"],
        )
