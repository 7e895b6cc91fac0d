"""The settlement worker: a poison entry is parked, never blocking the rest, and it shows."""

from __future__ import annotations

import redis

from qrloop import keyspace
from support import Stack, eventually, fetchval, redeem, sample


def _gauge(stack: Stack, name: str) -> int:
    return int(sample(stack.base_url, name))


def test_poison_entry_is_dead_lettered_and_the_rest_settles(stack: Stack) -> None:
    """A malformed stream entry goes to the dead-letter stream (and /metrics counts it) while
    a redemption queued behind it still settles, and the backlog drains to zero."""
    client = redis.Redis.from_url(stack.stores.redis_url)
    stream = keyspace.events(0)
    dead_before = _gauge(stack, "qrloop_dead_letters")
    client.xadd(stream, {"redeem": "not|a|redemption"})

    merchant = stack.new_merchant()
    store = merchant.created("/v1/stores", {"name": "S"})["id"]
    campaign = merchant.campaign()
    code = merchant.codes(campaign, 1)[0]
    assert redeem(stack, merchant.terminal_token(store), code).status_code == 200

    def settled() -> bool:
        query = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"
        return fetchval(stack, query, campaign) == 1

    eventually(settled, within=15)
    eventually(lambda: _gauge(stack, "qrloop_dead_letters") == dead_before + 1, within=15)
    parked = client.xrange(keyspace.dead_letters(stream))
    assert parked[-1][1] == {b"redeem": b"not|a|redemption"}
    eventually(lambda: _gauge(stack, "qrloop_settlement_backlog") == 0, within=15)
