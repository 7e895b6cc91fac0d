"""The settlement worker: a poison entry is parked, never blocking the rest, and it shows;
every row is stamped settled when it is inserted; settled entries leave Valkey; a use settles
once whatever time its entry carries."""

from __future__ import annotations

import redis

from qrloop import keyspace
from support import Load, Stack, eventually, fetch, fetchval, redeem, sample, tills


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


def test_settled_at_is_never_before_redeemed_at(stack: Stack) -> None:
    """Under a paced till load (so the worker often waits in its blocking read), every
    redemption is stamped settled at the moment of its insert: settled_at >= redeemed_at on
    every row. With the transaction's start time (now()) it was up to a second earlier."""
    merchant = stack.new_merchant()
    campaign = merchant.campaign()
    codes = merchant.codes(campaign, 300)
    with Load(stack.base_url, tills(merchant, 2), codes, concurrency=8, rate=150) as load:
        attempts = load.finish(within=120)
    assert {a.status for a in attempts} == {200}
    settled = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"
    eventually(lambda: fetchval(stack, settled, campaign) == len(codes), within=60)
    early = fetch(
        stack,
        "SELECT serial, redeemed_at, settled_at FROM redemptions"
        " WHERE campaign_id = $1 AND settled_at < redeemed_at",
        campaign,
    )
    assert not early, f"{len(early)} rows settled before they were redeemed, e.g. {early[0]}"


def test_settled_entries_leave_the_stream(stack: Stack) -> None:
    """Once a redemption is in PostgreSQL its stream entry is acknowledged and deleted, so
    Valkey's memory does not grow with every redemption ever made: after a batch settles, the
    events streams hold none of its entries."""
    client = redis.Redis.from_url(stack.stores.redis_url)
    merchant = stack.new_merchant()
    campaign = merchant.campaign()
    codes = merchant.codes(campaign, 60)
    with Load(stack.base_url, tills(merchant, 2), codes, concurrency=4) as load:
        attempts = load.finish(within=60)
    assert {a.status for a in attempts} == {200}
    settled = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"
    eventually(lambda: fetchval(stack, settled, campaign) == len(codes), within=60)

    def entries_of_campaign() -> int:
        prefix = f"{campaign}|".encode()
        return sum(
            fields.get(b"redeem", b"").startswith(prefix)
            for partition in range(int(stack.env.get("QRLOOP_PARTITIONS", "16")))
            for _, fields in client.xrange(keyspace.events(partition))
        )

    eventually(lambda: entries_of_campaign() == 0, within=15)


def test_a_use_settles_once_whatever_time_its_entry_carries(stack: Stack) -> None:
    """A use that reaches settlement again with another time (a Redis failover lost a settled
    consume and the code was consumed again) keeps its first row and its one ledger booking,
    even when the second time falls in another month's partition."""
    merchant = stack.new_merchant()
    store = merchant.created("/v1/stores", {"name": "S"})["id"]
    campaign = merchant.campaign()
    code = merchant.codes(campaign, 1)[0]
    assert redeem(stack, merchant.terminal_token(store), code).status_code == 200
    rows = "SELECT * FROM redemptions WHERE campaign_id = $1"
    eventually(lambda: len(fetch(stack, rows, campaign)) == 1, within=15)
    (first,) = fetch(stack, rows, campaign)

    later_ms = int(first["redeemed_at"].timestamp() * 1000) + 40 * 86_400_000
    replayed = "|".join(
        str(value)
        for value in (
            campaign, first["serial"], first["use_no"], first["terminal_id"],
            first["store_id"], first["accepting_merchant_id"], later_ms,
        )
    )  # fmt: skip
    partitions = int(stack.env.get("QRLOOP_PARTITIONS", "16"))
    stream = keyspace.events(keyspace.partition_of(campaign, first["serial"], partitions))
    client = redis.Redis.from_url(stack.stores.redis_url)
    entry = client.xadd(stream, {"redeem": replayed})

    eventually(lambda: not client.xrange(stream, entry, entry), within=15)
    assert [dict(row) for row in fetch(stack, rows, campaign)] == [dict(first)]
    booked = "SELECT count(*) FROM ledger_transactions WHERE campaign_id = $1"
    assert fetchval(stack, booked, campaign) == 1
