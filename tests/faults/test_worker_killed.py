"""kill -9 of the settlement worker in the middle of a batch, under load."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable

import redis

from qrloop.settings import load as load_settings
from support import (
    Load,
    Stack,
    eventually,
    fetch,
    fetchval,
    kill_holding_entries,
    pending_entries,
    settled_exactly_once,
    tills,
)

CODES = 10_000
SETTLED = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"


def test_worker_killed_mid_batch_settles_every_redemption_exactly_once(
    workerless: Stack, spawn: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    """10,000 redemptions at 48 concurrent requests from 4 tills; the worker is kill -9'd while
    it holds entries read but not acknowledged (committed or not: the kill may fall between
    commit and XACK), and a new worker, a new consumer, is started. Every code is answered 200
    once (a 503, the store slow to answer on a loaded machine, is retried with the same nonce,
    as a till does);
    the new worker reclaims the dead consumer's entries once they are idle 30 s, until nothing
    is pending; then PostgreSQL holds exactly one row per 200 answer (every redeemed code, the
    held entries included, no duplicates), each booked by exactly one balanced ledger
    transaction, however often its entry was delivered."""
    stack = workerless
    partitions = load_settings(stack.env).partitions
    client = redis.Redis.from_url(stack.stores.redis_url)
    spawn("signer")
    merchant = stack.new_merchant()
    tokens = tills(merchant, 4)
    campaign = merchant.campaign(platform_fee=25)
    codes = merchant.codes(campaign, CODES)

    first = spawn("worker")
    with Load(stack.base_url, tokens, codes, concurrency=48, retry=frozenset({503})) as load:
        eventually(lambda: fetchval(stack, SETTLED, campaign) >= 500, within=60)
        held = kill_holding_entries(first, client, partitions)
        answered_at_kill = load.count()
        spawn("worker")
        attempts = load.finish(within=120)

    assert answered_at_kill < CODES, "the worker was killed after the load, not during it"
    assert {a.status for a in attempts} <= {200, 503}
    answered = [a for a in attempts if a.status == 200]
    assert Counter(a.code for a in answered) == Counter(codes)
    redeemed = {a.redemption_id for a in answered if a.redemption_id}
    assert len(redeemed) == CODES

    def settled() -> bool:
        # Nothing pending (the dead consumer's entries reclaimed and acknowledged), all rows in.
        if pending_entries(client, partitions):
            return False
        return bool(fetchval(stack, SETTLED, campaign) >= CODES)

    eventually(settled, within=90)
    settled_exactly_once(stack, campaign, redeemed)
    query = "SELECT stream_entry FROM redemptions WHERE campaign_id = $1"
    assert set(held) <= {row["stream_entry"] for row in fetch(stack, query, campaign)}
