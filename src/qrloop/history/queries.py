"""The SQL of the redemption lists, newest first, each scoped to the merchant asking.

A merchant sees a redemption as its issuer (the campaign is its own) or as its acceptor (its
store accepted the code). Each list reads the rows in key order, (redeemed_at, campaign_id,
serial, use_no) descending, from an index that the narrowest filter picks (migration 012):

* a terminal, a store or a campaign: that column's index, the scope a filter on the rows;
* the acceptor side alone: the accepting merchant's index;
* the issuer side alone: each of the merchant's campaigns through the campaign index, a
  page's worth apiece, merged by one sort of (campaigns x page) rows;
* both sides: the two above as one UNION ALL, the acceptor branch without the merchant's own
  campaigns (already on the issuer side), merged in key order.

Only plain SQL on `redemptions`, so it reads the monthly partitions alike (a reversal is
joined by its redemption's time too: it lives in that month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qrloop.history.schemas import Side

# redeemed_at, campaign_id, serial, use_no: a row's place in every list.
Key = tuple[datetime, int, int, int]

_ORDER = "ORDER BY r.redeemed_at DESC, r.campaign_id DESC, r.serial DESC, r.use_no DESC"

# What a merchant is shown of each redemption; `k` holds the rows a list selected.
_DETAIL = """
SELECT k.campaign_id, c.name AS campaign_name, k.serial, k.use_no, k.redeemed_at,
    v.reversed_at, c.face_value, c.currency, c.merchant_id AS issuer_merchant_id,
    k.accepting_merchant_id, k.store_id, s.name AS store_name, k.terminal_id,
    t.name AS terminal_name
FROM ({keys}) k
JOIN campaigns c ON c.id = k.campaign_id
JOIN stores s ON s.id = k.store_id
JOIN terminals t ON t.id = k.terminal_id
LEFT JOIN reversals v ON (v.campaign_id, v.serial, v.use_no, v.redeemed_at)
    = (k.campaign_id, k.serial, k.use_no, k.redeemed_at)
ORDER BY k.redeemed_at DESC, k.campaign_id DESC, k.serial DESC, k.use_no DESC
"""


@dataclass(frozen=True, slots=True)
class Filters:
    """A list's question: whose redemptions, which side of them, and which of those."""

    merchant_id: int
    side: Side | None = None
    campaign_id: int | None = None
    store_id: int | None = None
    terminal_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


class _Arguments:
    """Query parameters in the order their placeholders were handed out."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def listing(filters: Filters, after: Key | None, limit: int | None) -> tuple[str, list[Any]]:
    """The list's statement and its arguments: rows after the key `after` (all when None),
    at most `limit` of them (all when None), newest first."""
    arg = _Arguments()
    keys = _selected(filters, after, limit, arg, ordered=True)
    return _DETAIL.format(keys=keys), arg.values


def selected(filters: Filters) -> tuple[str, list[Any]]:
    """Every row of `redemptions` the filters select, in no order, through the same indexes as
    the list: for counts over them (the dashboard's charts)."""
    arg = _Arguments()
    return _selected(filters, None, None, arg, ordered=False), arg.values


def _selected(
    filters: Filters, after: Key | None, limit: int | None, arg: _Arguments, *, ordered: bool
) -> str:
    """The rows `r.*` the filters select; newest first and stopped after `limit` when
    `ordered`."""
    merchant = arg(filters.merchant_id)
    rows = _row_conditions(filters, after, arg)
    last = f" {_ORDER}" if ordered else ""
    if limit is not None:
        last += f" LIMIT {arg(limit)}"
    narrowed = [
        f"r.{column} = {arg(value)}"
        for column, value in (
            ("campaign_id", filters.campaign_id),
            ("store_id", filters.store_id),
            ("terminal_id", filters.terminal_id),
        )
        if value is not None
    ]
    if narrowed:
        return _narrowed(filters.side, merchant, [*narrowed, *rows], last)
    if filters.side is Side.ISSUER:
        return _issued(merchant, rows, last)
    if filters.side is Side.ACCEPTOR:
        return _accepted(merchant, rows, last)
    own = f"r.campaign_id NOT IN (SELECT id FROM campaigns WHERE merchant_id = {merchant})"
    issued = _issued(merchant, rows, last)
    accepted = _accepted(merchant, [*rows, own], last)
    return f"SELECT * FROM (({issued}) UNION ALL ({accepted})) r{last}"


def one(merchant_id: int, key: tuple[int, int, int]) -> tuple[str, list[Any]]:
    """The statement for one redemption (campaign, serial, use) the merchant is a party to."""
    arg = _Arguments()
    merchant = arg(merchant_id)
    campaign, serial, use = (arg(part) for part in key)
    conditions = [f"r.campaign_id = {campaign}", f"r.serial = {serial}", f"r.use_no = {use}"]
    return _DETAIL.format(keys=_narrowed(None, merchant, conditions, "")), arg.values


def _row_conditions(filters: Filters, after: Key | None, arg: _Arguments) -> list[str]:
    """The time range and the keyset condition, on any branch's rows `r`."""
    conditions = []
    if filters.since is not None:
        conditions.append(f"r.redeemed_at >= {arg(filters.since)}")
    if filters.until is not None:
        conditions.append(f"r.redeemed_at < {arg(filters.until)}")
    if after is not None:
        at, campaign, serial, use = (arg(part) for part in after)
        # The first condition bounds the index scan; the second breaks ties within its ms.
        conditions.append(f"r.redeemed_at <= {at}")
        conditions.append(
            f"(r.redeemed_at, r.campaign_id, r.serial, r.use_no)"
            f" < ({at}, {campaign}, {serial}, {use})"
        )
    return conditions


def _where(conditions: list[str]) -> str:
    return " AND ".join(conditions) if conditions else "true"


def _narrowed(side: Side | None, merchant: str, conditions: list[str], last: str) -> str:
    """Rows picked by their own columns (a campaign, store or terminal), then scoped."""
    scope = {
        Side.ISSUER: f"c.merchant_id = {merchant}",
        Side.ACCEPTOR: f"r.accepting_merchant_id = {merchant}",
        None: f"(c.merchant_id = {merchant} OR r.accepting_merchant_id = {merchant})",
    }[side]
    return (
        "SELECT r.* FROM redemptions r JOIN campaigns c ON c.id = r.campaign_id"
        f" WHERE {_where([*conditions, scope])}{last}"
    )


def _issued(merchant: str, conditions: list[str], last: str) -> str:
    """Redemptions of the merchant's campaigns: each campaign's newest, merged. Unordered, the
    subquery is fenced with OFFSET 0: PostgreSQL would otherwise flatten it into a join and
    may read whole months for a few campaigns' rows (benchmarks/dashboard_counts.py)."""
    return (
        f"SELECT r.* FROM campaigns c CROSS JOIN LATERAL ("
        f"SELECT * FROM redemptions r WHERE r.campaign_id = c.id AND {_where(conditions)}"
        f"{last or ' OFFSET 0'}) r WHERE c.merchant_id = {merchant}{last}"
    )


def _accepted(merchant: str, conditions: list[str], last: str) -> str:
    """Redemptions at the merchant's stores, whoever issued the code."""
    where = _where([f"r.accepting_merchant_id = {merchant}", *conditions])
    return f"SELECT r.* FROM redemptions r WHERE {where}{last}"
