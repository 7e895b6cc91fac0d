"""kill -9 of Redis (Valkey, AOF fsynced on every write) under load, then a restart."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import redis

from support import (
    Load,
    Stack,
    eventually,
    fetchval,
    settled_exactly_once,
    start_valkey,
    tills,
)

CODES = 5_000
SETTLED = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_redis_killed_under_load_loses_no_acknowledged_redemption(
    own_redis: tuple[Stack, Path, int],
) -> None:
    """3 tills redeem 5,000 codes at 32 concurrent requests; Valkey is kill -9'd mid-way and
    restarted from its AOF, and a till retries a 503 with the same nonce after Retry-After.
    Every redeem sent while Valkey is dead answers 503 unavailable (never 200 without a
    consume); every code ends with exactly one 200 over the whole run; afterwards a fourth till
    gets 409 already_redeemed for every code, and PostgreSQL holds exactly the redemptions
    answered 200, each booked once in the ledger."""
    stack, folder, port = own_redis
    merchant = stack.new_merchant()
    tokens = tills(merchant, 4)
    campaign = merchant.campaign(platform_fee=25)
    codes = merchant.codes(campaign, CODES)
    pid = int(redis.Redis(port=port).info("server")["process_id"])
    restarted = None
    try:
        load = Load(stack.base_url, tokens[:3], codes, concurrency=32, retry=frozenset({503}))
        with load:
            eventually(lambda: load.count(200) >= CODES // 4, within=60)
            os.kill(pid, signal.SIGKILL)
            eventually(lambda: _gone(pid), within=10)
            dead = time.monotonic()
            eventually(lambda: load.count(sent_after=dead) >= 64, within=30)
            restarting = time.monotonic()
            restarted = start_valkey(folder, port)
            attempts = load.finish(within=120)

        during = [a for a in attempts if dead < a.sent and a.answered < restarting]
        assert len(during) >= 64
        assert Counter((a.status, a.reason) for a in during).keys() == {(503, "unavailable")}
        assert {a.status for a in attempts} <= {200, 503}
        redeemed = Counter(a.code for a in attempts if a.status == 200)
        assert redeemed == Counter(codes), "a code was not redeemed exactly once"

        with Load(stack.base_url, tokens[3:], codes, concurrency=32) as again:
            rescans = again.finish(within=120)
        answers = Counter((a.status, a.reason) for a in rescans)
        assert answers == {(409, "already_redeemed"): CODES}

        ids = {a.redemption_id for a in attempts if a.redemption_id}
        assert len(ids) == CODES
        eventually(lambda: fetchval(stack, SETTLED, campaign) >= CODES, within=60)
        settled_exactly_once(stack, campaign, ids)
    finally:
        if restarted is not None:
            restarted.kill()
            restarted.wait()
