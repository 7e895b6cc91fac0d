"""Bounded memory and fair use: strangers' guesses grow nothing, merchants stay within quotas."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from qrloop.redemption.rules import RulesCache
from support import Merchant, Stack, Stores, reason, serving, till


def test_random_reversal_ids_do_not_grow_the_rules_cache(stack: Stack) -> None:
    """Memory growth by guessed ids: 10,000 reversal lookups of random campaign ids leave the
    rules cache (and so the refresher's query) exactly as large as before, while a campaign
    created afterwards is still found."""
    merchant = stack.new_merchant()

    async def lookups() -> tuple[int, int, bool]:
        pool = await asyncpg.create_pool(stack.stores.database_url, min_size=1, max_size=4)
        try:
            cache = RulesCache(pool)
            await cache.preload()
            before = len(cache)
            for _ in range(1_000):
                guesses = [1_000 + secrets.randbelow(10**15) for _ in range(10)]
                found = await asyncio.gather(*(cache.get(guess) for guess in guesses))
                assert found == [None] * 10
            after = len(cache)
            created = await asyncio.to_thread(merchant.campaign)
            await cache.refresh()
            return before, after, await cache.get(created) is not None
        finally:
            await pool.close()

    before, after, new_campaign_found = asyncio.run(lookups())
    assert after == before
    assert new_campaign_found


def test_guessing_reversals_gets_the_terminal_rate_limited(stack: Stack) -> None:
    """Enumerating redemption ids through reversals: each failed lookup (unknown campaign or
    no such redemption) counts as an invalid scan, so the 11th guess in a minute is 429."""
    merchant = stack.new_merchant()
    store_id = merchant.created("/v1/stores", {"name": "Main"})["id"]
    token = merchant.terminal_token(store_id)
    campaign_id = merchant.campaign()
    guesses = [f"{secrets.randbelow(10**12) + 1_000}-{secrets.randbelow(1000)}-1" for _ in range(5)]
    guesses += [f"{campaign_id}-{serial}-1" for serial in range(5)]
    for guess in guesses:
        response = till(stack, f"/v1/redemptions/{guess}/reverse", token, {})
        assert (response.status_code, reason(response)) == (404, "not_found")
    blocked = till(stack, f"/v1/redemptions/{campaign_id}-9-1/reverse", token, {})
    assert (blocked.status_code, reason(blocked)) == (429, "rate_limited")


def test_a_void_of_ten_thousand_copies_of_one_code_voids_it_once(stack: Stack) -> None:
    """CPU exhaustion through a void: 10,000 copies of one Ed25519 code are one code to
    verify and void; more than 10,000 entries are refused before any is checked."""
    merchant = stack.new_merchant()
    campaign_id = merchant.campaign(algorithm="ed25519")
    code = merchant.codes(campaign_id, 1)[0]
    response = merchant.post("/v1/codes/void", {"codes": [code] * 10_000})
    assert (response.status_code, response.json()) == (200, {"voided": 1})
    too_many = merchant.post("/v1/codes/void", {"codes": [code] * 10_001})
    assert (too_many.status_code, reason(too_many)) == (400, "bad_request")


def _with_quota(stack: Stack, **limits: int) -> Merchant:
    """A new merchant whose quotas are overridden with `qrloop merchants quota`."""
    merchant = stack.new_merchant()
    options = [f"--{name.replace('_', '-')}={limit}" for name, limit in limits.items()]
    shown = stack.cli("merchants", "quota", str(merchant.id), *options).stdout
    for name, limit in limits.items():
        assert f"{name}={limit} (override)" in shown
    return merchant


def _order(merchant: Merchant, campaign_id: int, quantity: int) -> Any:
    return merchant.post(f"/v1/campaigns/{campaign_id}/orders", {"quantity": quantity})


def _refused(response: Any, quota: str, limit: int) -> None:
    assert (response.status_code, reason(response)) == (429, "quota_exceeded"), response.text
    body = response.json()
    assert (body["quota"], body["limit"]) == (quota, limit)
    assert f"{limit:,}" in body["detail"]


def test_outstanding_codes_quota(stack: Stack) -> None:
    """Code-space hoarding: an order beyond the outstanding-codes quota is 429
    quota_exceeded; codes of a campaign that has ended no longer count against it."""
    merchant = _with_quota(stack, outstanding_codes=100)
    campaign_id = merchant.campaign()
    assert _order(merchant, campaign_id, 60).status_code == 202
    _refused(_order(merchant, campaign_id, 50), "outstanding_codes", 100)
    assert _order(merchant, campaign_id, 40).status_code == 202
    _refused(_order(merchant, merchant.campaign(), 1), "outstanding_codes", 100)
    ended = datetime.now(UTC) - timedelta(seconds=1)
    window = {
        "valid_from": (ended - timedelta(days=1)).isoformat(),
        "valid_until": ended.isoformat(),
    }
    response = httpx.patch(
        f"{stack.base_url}/v1/campaigns/{campaign_id}", json=window, headers=merchant.headers
    )
    assert response.status_code == 200, response.text
    assert _order(merchant, merchant.campaign(), 100).status_code == 202


def test_orders_per_day_quota(stack: Stack) -> None:
    """Flooding the signer's queue: the third order in 24 hours of a merchant allowed two is
    429 quota_exceeded, and nothing is reserved for it."""
    merchant = _with_quota(stack, orders_per_day=2)
    campaign_id = merchant.campaign()
    for _ in range(2):
        assert _order(merchant, campaign_id, 1).status_code == 202
    _refused(_order(merchant, campaign_id, 1), "orders_per_day", 2)
    assert merchant.get(f"/v1/campaigns/{campaign_id}/stats").json()["issued"] <= 2


@pytest.fixture(scope="module")
def one_order_a_day(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A stack whose default quota is one order a day."""
    workdir = tmp_path_factory.mktemp("quota")
    with serving(stores, workdir, QRLOOP_QUOTA_ORDERS_PER_DAY="1") as stack:
        yield stack


def test_quota_defaults_come_from_settings(one_order_a_day: Stack) -> None:
    """QRLOOP_QUOTA_ORDERS_PER_DAY is every merchant's limit unless overridden; an override
    lifts it for that merchant alone, and `default` clears the override."""
    merchant = one_order_a_day.new_merchant()
    campaign_id = merchant.campaign()
    assert _order(merchant, campaign_id, 1).status_code == 202
    _refused(_order(merchant, campaign_id, 1), "orders_per_day", 1)
    lifted = _with_quota(one_order_a_day, orders_per_day=3)
    lifted_campaign = lifted.campaign()
    for _ in range(3):
        assert _order(lifted, lifted_campaign, 1).status_code == 202
    cleared = one_order_a_day.cli("merchants", "quota", str(lifted.id), "--orders-per-day=default")
    assert "orders_per_day=1 (default)" in cleared.stdout
