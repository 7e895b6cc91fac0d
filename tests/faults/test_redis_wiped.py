"""Redis wiped under load: the till refuses every code until the state is rebuilt from
PostgreSQL, and afterwards Redis and PostgreSQL agree."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import redis

from qrloop.settlement.state import REBUILD_LOCK
from support import Load, Stack, eventually, fetch, reason, redeem, tills

CODES = 4_000
AGREE = "Redis and PostgreSQL agree on every code's use."


def _settled(stack: Stack, campaign_id: int) -> set[str]:
    rows = fetch(
        stack,
        "SELECT serial, use_no FROM redemptions WHERE campaign_id = $1",
        campaign_id,
    )
    return {f"{campaign_id}-{row['serial']}-{row['use_no']}" for row in rows}


def test_wiped_redis_refuses_until_rehydrated_then_agrees_with_postgres(
    own_redis: tuple[Stack, Path, int],
) -> None:
    """3 tills redeem 4,000 codes at 16 concurrent requests, retrying a 503 with the same
    nonce; Redis is wiped (FLUSHALL) mid-way. Every redeem sent after the wipe, until
    `qrloop reconcile --rehydrate` has rebuilt the state from PostgreSQL, answers 503
    unavailable, and readiness says so; plain `qrloop reconcile` reports the lost state (exit
    1). Afterwards every code ends with exactly one 200, settlement goes on (consumer groups
    recreated: every redemption answered after the rebuild is settled), `qrloop reconcile` finds
    Redis and PostgreSQL in agreement, and a fourth till is refused 409 already_redeemed for
    every settled code. (Redemptions acknowledged but not yet settled at the wipe are gone
    with it: a wipe is a loss beyond what the AOF protects against.)"""
    stack, _, port = own_redis
    merchant = stack.new_merchant()
    tokens = tills(merchant, 4)
    campaign = merchant.campaign(platform_fee=25)
    codes = merchant.codes(campaign, CODES)

    with Load(stack.base_url, tokens[:3], codes, concurrency=16, retry=frozenset({503})) as load:
        eventually(lambda: len(_settled(stack, campaign)) >= CODES // 4, within=60)
        redis.Redis(port=port).flushall()
        wiped = time.monotonic()
        eventually(lambda: load.count(sent_after=wiped) >= 32, within=30)
        ready = httpx.get(stack.base_url + "/health/ready")
        assert (ready.status_code, reason(ready)) == (503, "unavailable")
        report = stack.cli("reconcile", check=False)
        assert report.returncode == 1
        assert "state lost" in report.stdout
        rehydrating = time.monotonic()
        rebuilt = stack.cli("reconcile", "--rehydrate", check=False)
        assert rebuilt.returncode == 0, rebuilt.stdout
        rehydrated = time.monotonic()
        attempts = load.finish(within=120)

    during = [a for a in attempts if wiped < a.sent and a.answered < rehydrating]
    assert len(during) >= 32
    assert Counter((a.status, a.reason) for a in during).keys() == {(503, "unavailable")}
    assert {a.status for a in attempts} <= {200, 503}
    assert Counter(a.code for a in attempts if a.status == 200) == Counter(codes)
    assert httpx.get(stack.base_url + "/health/ready").status_code == 200

    after = {a.redemption_id for a in attempts if a.redemption_id and a.sent > rehydrated}
    assert after
    eventually(lambda: after <= _settled(stack, campaign), within=60)
    eventually(lambda: stack.cli("reconcile", check=False).stdout.strip() == AGREE, within=60)

    settled = _settled(stack, campaign)
    redeemed = {a.redemption_id: a.code for a in attempts if a.redemption_id}
    assert settled <= redeemed.keys()
    with Load(stack.base_url, tokens[3:], [redeemed[i] for i in settled], concurrency=16) as again:
        rescans = again.finish(within=120)
    answers = Counter((a.status, a.reason) for a in rescans)
    assert answers == {(409, "already_redeemed"): len(settled)}


def test_the_rebuild_waits_for_a_batch_read_before_the_wipe(
    own_redis: tuple[Stack, Path, int],
) -> None:
    """A settlement batch read before Redis was wiped, and committing while the rebuild runs,
    is not missed: settlement holds the rebuild lock shared from its read to its commit, so
    the rebuild waits for the commit and the batch's code is refused afterwards instead of
    being free again."""
    stack, _, port = own_redis
    merchant = stack.new_merchant()
    store_id = merchant.created("/v1/stores", {"name": "S"})["id"]
    terminal_id, token = merchant.terminal(store_id)
    campaign = merchant.campaign()
    order = merchant.order(campaign, 1)
    code = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv").text.split("\n")[1]
    redis.Redis(port=port).flushall()

    async def commit_during_the_rebuild() -> int:
        connection = await asyncpg.connect(stack.stores.database_url)
        batch = connection.transaction()
        await batch.start()
        await connection.execute("SELECT pg_advisory_xact_lock_shared($1)", REBUILD_LOCK)
        await connection.execute(
            "INSERT INTO redemptions (campaign_id, serial, use_no, terminal_id, store_id,"
            " accepting_merchant_id, redeemed_at, stream_entry)"
            " VALUES ($1, $2, 1, $3, $4, $5, now(), '1-0')",
            campaign, order["first_serial"], terminal_id, store_id, merchant.id,
        )  # fmt: skip
        rebuild = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "qrloop", "reconcile", "--rehydrate",
            env=stack.env, cwd=stack.workdir, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        deadline = time.monotonic() + 30
        while not await connection.fetchval(waiting):
            assert time.monotonic() < deadline, "the rebuild never waited for the batch"
            await asyncio.sleep(0.05)
        await batch.commit()
        await connection.close()
        return await rebuild.wait()

    assert asyncio.run(commit_during_the_rebuild()) == 0
    refused = redeem(stack, token, code.split(",")[0])
    assert (refused.status_code, reason(refused)) == (409, "already_redeemed")
