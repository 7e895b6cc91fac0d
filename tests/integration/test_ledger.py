"""The double-entry ledger: what a redemption and its reversal book, and that it balances."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from support import Stack, check_status, eventually, fetchval, redeem, till

ENTRIES = """
SELECT t.kind, e.account, e.merchant_id, e.currency, e.amount
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE t.campaign_id = $1 ORDER BY t.id, e.account
"""


def _entries(stack: Stack, campaign_id: int) -> list[tuple[Any, ...]]:
    async def fetch() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(stack.stores.database_url)
        try:
            return [tuple(row) for row in await connection.fetch(ENTRIES, campaign_id)]
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_alliance_redemption_and_reversal_book_balanced_entries(stack: Stack) -> None:
    """A code of issuer A redeemed at ally B's store moves the face value from A's payable to
    B's receivable and the platform fee from A to the platform; reversing it books the contra
    entries; every transaction sums to zero."""
    issuer, ally = stack.new_merchant("Issuer"), stack.new_merchant("Ally")
    ally_store = ally.created("/v1/stores", {"name": "Partner"})["id"]
    token = ally.terminal_token(ally_store)
    campaign = issuer.campaign(face_value=10_000, accepted_merchants=[ally.id], platform_fee=100)
    code = issuer.codes(campaign, 1)[0]
    ally.accept(campaign)
    eventually(lambda: check_status(stack, token, code) == "valid", within=1.0)
    redemption = redeem(stack, token, code).json()["redemption_id"]
    eventually(lambda: len(_entries(stack, campaign)) == 4, within=10)
    assert _entries(stack, campaign) == [
        ("redemption", "fees", issuer.id, "CNY", -100),
        ("redemption", "payable", issuer.id, "CNY", -10_000),
        ("redemption", "platform_revenue", None, "CNY", 100),
        ("redemption", "receivable", ally.id, "CNY", 10_000),
    ]
    assert till(stack, f"/v1/redemptions/{redemption}/reverse", token, {}).status_code == 200
    eventually(lambda: len(_entries(stack, campaign)) == 8, within=10)
    reversal = _entries(stack, campaign)[4:]
    assert [(kind, account, amount) for kind, account, _, _, amount in reversal] == [
        ("reversal", "fees", 100),
        ("reversal", "payable", 10_000),
        ("reversal", "platform_revenue", -100),
        ("reversal", "receivable", -10_000),
    ]
    unbalanced = fetchval(
        stack,
        "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries"
        " GROUP BY transaction_id HAVING sum(amount) <> 0) AS t",
    )
    assert unbalanced == 0
    assert fetchval(stack, "SELECT coalesce(sum(amount), 0) FROM ledger_entries") == 0


def test_the_schema_refuses_an_unbalanced_or_edited_ledger(stack: Stack) -> None:
    """An insert that leaves a ledger transaction unbalanced fails, as do balanced entries that
    name no ledger transaction or no merchant, and entries cannot be updated or deleted."""
    merchant = stack.new_merchant()
    store = merchant.created("/v1/stores", {"name": "S"})["id"]
    campaign = merchant.campaign()
    code = merchant.codes(campaign, 1)[0]
    assert redeem(stack, merchant.terminal_token(store), code).status_code == 200
    eventually(lambda: len(_entries(stack, campaign)) == 2, within=10)

    async def tamper() -> None:
        connection = await asyncpg.connect(stack.stores.database_url)
        try:
            transaction, redeemed_at = await connection.fetchrow(
                "SELECT id, redeemed_at FROM ledger_transactions WHERE campaign_id = $1", campaign
            )
            with pytest.raises(asyncpg.RaiseError, match="does not balance"):
                async with connection.transaction():
                    await connection.execute(
                        "INSERT INTO ledger_entries (transaction_id, redeemed_at, merchant_id,"
                        " account, currency, amount) VALUES ($1, $2, $3, 'payable', 'CNY', -1)",
                        transaction,
                        redeemed_at,
                        merchant.id,
                    )
            balanced = (
                "INSERT INTO ledger_entries (transaction_id, redeemed_at, merchant_id, account,"
                " currency, amount) VALUES ($1, $2, $3, 'payable', 'CNY', -1),"
                " ($1, $2, $3, 'receivable', 'CNY', 1)"
            )
            for wrong, refusal in (
                ((transaction + 1_000_000, redeemed_at, merchant.id), "no ledger transaction"),
                ((transaction, redeemed_at, 10**12), "no merchant"),
            ):
                with pytest.raises(asyncpg.RaiseError, match=refusal):
                    await connection.execute(balanced, *wrong)
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await connection.execute(
                    "UPDATE ledger_entries SET amount = amount + 1 WHERE transaction_id = $1",
                    transaction,
                )
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await connection.execute(
                    "DELETE FROM ledger_entries WHERE transaction_id = $1", transaction
                )
        finally:
            await connection.close()

    asyncio.run(tamper())
    assert len(_entries(stack, campaign)) == 2


def test_daily_settlement_by_counterparty_as_json_and_csv(stack: Stack) -> None:
    """The issuer owes its ally what the ally's stores redeemed, plus the platform's fees; the
    ally is owed the same; both as JSON and CSV for the day."""
    issuer, ally = stack.new_merchant("Issuer"), stack.new_merchant("Ally")
    ally_token = ally.terminal_token(ally.created("/v1/stores", {"name": "Partner"})["id"])
    own_token = issuer.terminal_token(issuer.created("/v1/stores", {"name": "Own"})["id"])
    campaign = issuer.campaign(face_value=2_000, accepted_merchants=[ally.id], platform_fee=50)
    codes = issuer.codes(campaign, 3)
    ally.accept(campaign)
    eventually(lambda: check_status(stack, ally_token, codes[0]) == "valid", within=1.0)
    for token, code in ((ally_token, codes[0]), (ally_token, codes[1]), (own_token, codes[2])):
        assert redeem(stack, token, code).status_code == 200
    eventually(lambda: len(_entries(stack, campaign)) == 12, within=10)
    day = fetchval(stack, "SELECT max(booked_at)::date FROM ledger_transactions")

    owes = issuer.get("/v1/settlements", date=str(day)).json()
    assert owes["lines"] == [
        {"direction": "own", "counterparty_id": issuer.id, "currency": "CNY", "amount": 2_000,
         "redemptions": 1, "reversals": 0},
        {"direction": "owes", "counterparty_id": ally.id, "currency": "CNY", "amount": 4_000,
         "redemptions": 2, "reversals": 0},
    ]  # fmt: skip
    assert owes["platform_fees"] == [{"currency": "CNY", "amount": 150}]
    assert owes["net"] == {"CNY": -4_150}
    owed = ally.get("/v1/settlements", date=str(day)).json()
    assert owed["net"] == {"CNY": 4_000}
    assert [line["direction"] for line in owed["lines"]] == ["owed"]

    table = ally.get("/v1/settlements", date=str(day), format="csv")
    assert table.headers["content-type"].startswith("text/csv")
    assert table.text.splitlines() == [
        "date,direction,counterparty_id,currency,amount,redemptions,reversals",
        f"{day},owed,{issuer.id},CNY,4000,2,0",
    ]
    stranger = stack.new_merchant("Stranger")
    assert stranger.get("/v1/settlements", date=str(day)).json()["lines"] == []
    assert issuer.get("/v1/settlements", date="not-a-day").status_code == 400


def test_campaign_stats_agree_with_the_ledger(stack: Stack) -> None:
    """After four redemptions and one reversal have settled, the campaign's stats count 4
    settled and 1 reversed, 3 codes live-redeemed (= settled - reversed), and the value and
    fees the ledger holds for the campaign, net of the reversal."""
    merchant = stack.new_merchant()
    token = merchant.terminal_token(merchant.created("/v1/stores", {"name": "S"})["id"])
    campaign = merchant.campaign(face_value=1_500, platform_fee=30)
    answers = [redeem(stack, token, code).json() for code in merchant.codes(campaign, 4)]
    first = answers[0]["redemption_id"]
    assert till(stack, f"/v1/redemptions/{first}/reverse", token, {}).status_code == 200
    eventually(lambda: len(_entries(stack, campaign)) == 5 * 4, within=15)

    stats = merchant.get(f"/v1/campaigns/{campaign}/stats").json()
    assert (stats["settled"], stats["reversed"], stats["redeemed"]) == (4, 1, 3)
    assert stats["redeemed"] == stats["settled"] - stats["reversed"]
    payable = sum(amount for _, account, _, _, amount in _entries(stack, campaign)
                  if account == "payable")  # fmt: skip
    assert stats["settled_value"] == -payable == 3 * 1_500
    assert stats["platform_fees"] == 3 * 30
    assert stats["currency"] == "CNY"
