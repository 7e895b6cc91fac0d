"""PostgreSQL stopped for 30 seconds under load: tills are answered, settlement catches up."""

from __future__ import annotations

import time
from collections import Counter

import redis

from qrloop import keyspace
from qrloop.embedded import EmbeddedServers
from qrloop.settings import load as load_settings
from support import Load, Stack, eventually, fetchval, redeem, settled_exactly_once, tills

OUTAGE_SECONDS = 30
CODES = 12_000
SETTLED = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"


def _unacknowledged(client: redis.Redis, partitions: int) -> int:
    """Stream entries the settlement group has not acknowledged (read or not)."""
    total = 0
    for partition in range(partitions):
        for group in client.xinfo_groups(keyspace.events(partition)):
            if group["name"] == keyspace.SETTLEMENT_GROUP.encode():
                total += int(group["pending"]) + int(group["lag"] or 0)
    return total


def test_postgres_down_for_30_s_tills_answer_and_settlement_catches_up(
    own_postgres: tuple[Stack, EmbeddedServers],
) -> None:
    """With `qrloop serve` (API, worker, signer) under a steady 200 redeems/s from 4 tills,
    PostgreSQL is stopped for 30 s and started again. Every redeem (fresh codes) is answered
    200, during the outage too, also for a campaign no API process had scanned before;
    nothing is acknowledged in Redis while PostgreSQL is down (every redemption of the outage
    is still unacknowledged in the stream when it ends); afterwards settlement catches up:
    PostgreSQL holds exactly the redemptions answered 200, each booked once in the ledger."""
    stack, servers = own_postgres
    partitions = load_settings(stack.env).partitions
    client = redis.Redis.from_url(stack.stores.redis_url)
    merchant = stack.new_merchant()
    tokens = tills(merchant, 4)
    campaign = merchant.campaign(platform_fee=25)
    codes = merchant.codes(campaign, CODES)
    # Created before the outage, never scanned before it: no API process has looked it up.
    unseen = merchant.campaign()
    unseen_codes = merchant.codes(unseen, 5)

    with Load(stack.base_url, tokens, codes, concurrency=16, rate=200) as load:
        # Warm: the campaign's rules are cached and settlement is flowing.
        eventually(lambda: fetchval(stack, SETTLED, campaign) >= 100, within=30)
        servers.stop_postgres()
        down = time.monotonic()
        unseen_answers = [redeem(stack, tokens[0], code).status_code for code in unseen_codes]

        def outage_over_or_refused() -> bool:
            refused = load.count() > load.count(200)
            return refused or time.monotonic() - down >= OUTAGE_SECONDS

        eventually(outage_over_or_refused, within=OUTAGE_SECONDS + 10)
        answered_during = load.count(200, sent_after=down)
        unacknowledged = _unacknowledged(client, partitions)
        servers.start_postgres()
        up = time.monotonic()
        eventually(lambda: load.count(sent_after=up) >= 200, within=30)
        load.stop()
        attempts = load.finish(within=30)

    refusals = Counter((a.status, a.reason) for a in attempts if a.status != 200)
    assert not refusals, f"refused: {refusals}"
    during = [a for a in attempts if down < a.sent and a.answered < up]
    assert len(during) >= 100, "too few redeems during the outage to say anything"
    assert unacknowledged >= answered_during
    redeemed = {a.redemption_id for a in attempts if a.redemption_id}
    assert len(redeemed) == len(attempts)
    eventually(lambda: fetchval(stack, SETTLED, campaign) >= len(redeemed), within=60)
    settled_exactly_once(stack, campaign, redeemed)
    assert unseen_answers == [200] * len(unseen_codes)
    eventually(lambda: fetchval(stack, SETTLED, unseen) == len(unseen_codes), within=30)
