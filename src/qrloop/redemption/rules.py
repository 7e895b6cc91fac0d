"""Campaign rules as the till sees them, cached in process and refreshed in the background."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from qrloop.errors import Reason
from qrloop.rows import Campaign, campaign_of, columns

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
    issuer_name: str
    face_value: int
    currency: str
    valid_from: datetime | None
    valid_until: datetime | None
    hours: tuple[int, int] | None
    timezone: ZoneInfo
    acceptors: frozenset[int]  # merchants with an active acceptance agreement
    paused: bool
    reversal_window_ms: int

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
            accepting_merchant_id not in self.acceptors
        ):
            return Reason.NOT_ACCEPTED_HERE
        return None


# A campaign's rules with its issuer's name and the merchants that agreed to accept it, read in
# the same statement so that the refresher's one query carries acceptances and endings too.
_SELECT = f"""
SELECT {columns(Campaign, "c")}, m.name AS issuer_name,
    ARRAY(SELECT a.acceptor_merchant_id FROM acceptance_agreements a
          WHERE a.campaign_id = c.id AND a.status = 'active') AS acceptors
FROM campaigns c JOIN merchants m ON m.id = c.merchant_id
"""


def _rules(row: asyncpg.Record) -> CampaignRules:
    campaign = campaign_of(row)
    return CampaignRules(
        campaign_id=campaign.id,
        merchant_id=campaign.merchant_id,
        issuer_name=row["issuer_name"],
        face_value=campaign.face_value,
        currency=campaign.currency,
        valid_from=campaign.valid_from,
        valid_until=campaign.valid_until,
        hours=parse_hours(campaign.hours) if campaign.hours else None,
        timezone=ZoneInfo(campaign.timezone),
        acceptors=frozenset(row["acceptors"]),
        paused=campaign.paused,
        reversal_window_ms=campaign.reversal_window_s * 1000,
    )


class RulesCache:
    """Campaign rules by id, for every campaign a till may scan, held in process.

    `preload()` reads the live campaigns at start; `refresh()` (run by the process's refresher
    four times a second) re-reads them and picks up campaigns created since, so a pause or a
    new window reaches every process within a second, and a till keeps being answered while
    PostgreSQL is away, even for a campaign this process has not scanned before.

    An unknown id is remembered as unknown only when it is at most the newest id seen (ids are
    a sequence, so those are bounded by the campaigns that exist); ids beyond it, such as a
    stranger's guesses, are looked up and forgotten, so they grow neither the cache nor the
    refresher's query. A campaign created later is still picked up by `id > newest`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._rules: dict[int, CampaignRules | None] = {}
        self._newest = 0

    def __len__(self) -> int:
        """How many campaign ids the cache holds (and the refresher re-reads)."""
        return len(self._rules)

    async def get(self, campaign_id: int) -> CampaignRules | None:
        if campaign_id in self._rules:
            return self._rules[campaign_id]
        row = await self._pool.fetchrow(_SELECT + "WHERE c.id = $1", campaign_id)
        if row is None and campaign_id > self._newest:
            return None
        rules = self._rules[campaign_id] = _rules(row) if row else None
        return rules

    async def preload(self) -> None:
        """Every campaign not yet expired."""
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                _SELECT + "WHERE c.valid_until IS NULL OR c.valid_until > now()"
            )
            newest = await connection.fetchval("SELECT coalesce(max(id), 0) FROM campaigns")
        self._rules.update((row["id"], _rules(row)) for row in rows)
        self._newest = max(self._newest, newest)

    async def refresh(self) -> None:
        """Re-read every cached campaign, and add those created since, in one query."""
        ids = list(self._rules)
        rows = await self._pool.fetch(
            _SELECT + "WHERE c.id = ANY($1::bigint[]) OR c.id > $2",
            ids,
            self._newest,
        )
        fresh: dict[int, CampaignRules | None] = dict.fromkeys(ids)
        fresh.update((row["id"], _rules(row)) for row in rows)
        self._rules.update(fresh)
        self._newest = max(self._newest, *(row["id"] for row in rows), 0)
