"""Bounded memory and fair use: strangers' guesses grow nothing, merchants stay within quotas."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from qrloop.redemption.rules import RulesCache
from support import Stack, reason, till


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
