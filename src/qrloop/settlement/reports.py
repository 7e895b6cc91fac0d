"""Daily settlement per merchant: what it owes and is owed, by counterparty, from the ledger."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any, ClassVar

import asyncpg
import msgspec

# The ledger is partitioned by the redemption's month (migrations/013). A booking on a day is
# a redemption of that day or a reversal, which tills make within the campaign's reversal
# window (at most a day, migrations/001) of its redemption: so its redemption is of that day
# or the day before, and a day's margin either way for the clocks of the API hosts keeps the
# search to four days, one or two months. Each table read is bounded by itself: PostgreSQL
# carries equalities across a join, not ranges.
_BOOKED_ON = "t.booked_at >= $2::date AND t.booked_at < $2::date + 1"


def _months_of_the_day(alias: str) -> str:
    return f"{alias}.redeemed_at >= $2::date - 2 AND {alias}.redeemed_at < $2::date + 2"


# Each booked transaction pairs one payable (issuer) with one receivable (acceptor) entry.
_PAIRS = f"""
SELECT p.merchant_id AS issuer, r.merchant_id AS acceptor, p.currency,
       (-sum(p.amount))::bigint AS amount,
       count(*) FILTER (WHERE t.kind = 'redemption') AS redemptions,
       count(*) FILTER (WHERE t.kind = 'reversal') AS reversals
FROM ledger_transactions t
JOIN ledger_entries p ON (p.transaction_id, p.redeemed_at) = (t.id, t.redeemed_at)
    AND p.account = 'payable'
JOIN ledger_entries r ON (r.transaction_id, r.redeemed_at) = (t.id, t.redeemed_at)
    AND r.account = 'receivable'
WHERE {_BOOKED_ON} AND $1 IN (p.merchant_id, r.merchant_id)
  AND {_months_of_the_day("t")} AND {_months_of_the_day("p")} AND {_months_of_the_day("r")}
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""
_FEES = f"""
SELECT e.currency, (-sum(e.amount))::bigint AS amount
FROM ledger_transactions t
JOIN ledger_entries e ON (e.transaction_id, e.redeemed_at) = (t.id, t.redeemed_at)
WHERE e.account = 'fees' AND e.merchant_id = $1 AND {_BOOKED_ON}
  AND {_months_of_the_day("t")} AND {_months_of_the_day("e")}
GROUP BY 1 ORDER BY 1
"""


class Line(msgspec.Struct):
    """One counterparty and currency: `owes` (its codes redeemed elsewhere), `owed` (others'
    codes redeemed at its stores) or `own` (its codes at its own stores, netting to zero)."""

    direction: str
    counterparty_id: int
    currency: str
    amount: int
    redemptions: int
    reversals: int


class Fee(msgspec.Struct):
    currency: str
    amount: int


class Settlement(msgspec.Struct):
    date: date
    merchant_id: int
    lines: list[Line]
    platform_fees: list[Fee]
    net: dict[str, int]

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "date": "2026-12-01",
        "merchant_id": 1,
        "lines": [
            {
                "direction": "own",
                "counterparty_id": 1,
                "currency": "CNY",
                "amount": 40000,
                "redemptions": 81,
                "reversals": 1,
            },
            {
                "direction": "owes",
                "counterparty_id": 2,
                "currency": "CNY",
                "amount": 3500,
                "redemptions": 7,
                "reversals": 0,
            },
        ],
        "platform_fees": [],
        "net": {"CNY": -3500},
    }


async def daily(pool: asyncpg.Pool, merchant_id: int, day: date) -> Settlement:
    """Settlement of `merchant_id` for the UTC day `day`; net > 0 means it is owed money."""
    lines = []
    net: dict[str, int] = {}
    for row in await pool.fetch(_PAIRS, merchant_id, day):
        issuer, acceptor = row["issuer"], row["acceptor"]
        if issuer == acceptor:
            direction, counterparty, signed = "own", issuer, 0
        elif issuer == merchant_id:
            direction, counterparty, signed = "owes", acceptor, -row["amount"]
        else:
            direction, counterparty, signed = "owed", issuer, row["amount"]
        lines.append(
            Line(
                direction,
                counterparty,
                row["currency"],
                row["amount"],
                row["redemptions"],
                row["reversals"],
            )
        )
        net[row["currency"]] = net.get(row["currency"], 0) + signed
    fees = [
        Fee(row["currency"], row["amount"]) for row in await pool.fetch(_FEES, merchant_id, day)
    ]
    for fee in fees:
        net[fee.currency] = net.get(fee.currency, 0) - fee.amount
    return Settlement(day, merchant_id, lines, fees, net)


def as_csv(settlement: Settlement) -> str:
    """One row per line, then one per platform fee (direction `fee`, no counterparty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["date", "direction", "counterparty_id", "currency", "amount", "redemptions", "reversals"]
    )
    for line in settlement.lines:
        writer.writerow(
            [settlement.date, line.direction, line.counterparty_id, line.currency, line.amount,
             line.redemptions, line.reversals]
        )  # fmt: skip
    for fee in settlement.platform_fees:
        writer.writerow([settlement.date, "fee", "", fee.currency, fee.amount, "", ""])
    return out.getvalue()
