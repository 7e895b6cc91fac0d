"""The closed loop on a Valkey Cluster, REDIS_URL naming one replica: issue, claim (a link and
a pool), redeem, refuse replays, reverse, void, rate-limit, settle into PostgreSQL, reconcile,
and rebuild a primary's lost partitions; the campaigns' partitions span all three primaries."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
from redis.crc import key_slot

from cluster_support import Cluster
from qrloop import keyspace
from support import (
    Merchant,
    Stack,
    check_status,
    claim_with_code,
    eventually,
    fetchval,
    reason,
    redeem,
    sample,
    settled_exactly_once,
    till,
)

CAMPAIGNS = 6
CODES = 6
PARTITIONS = 16
AGREE = "Redis and PostgreSQL agree on every code's use."


@dataclass
class Campaign:
    id: int
    order_id: int
    codes: list[str]
    links: list[str]


@dataclass
class Shop:
    merchant: Merchant
    store_id: int
    token: str
    campaigns: list[Campaign]


def _campaign(stack: Stack, merchant: Merchant, campaign_id: int) -> Campaign:
    order = merchant.order(campaign_id, CODES)
    export = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv")
    rows = [line.split(",") for line in export.text.splitlines()[1:]]
    links = [row[2].removeprefix(stack.base_url) for row in rows]
    return Campaign(campaign_id, order["id"], [row[0] for row in rows], links)


def _primary_of(cluster: Cluster, campaign_id: int) -> int:
    """The port of the primary holding the campaign's codes (serials < 2^20: one partition)."""
    partition = keyspace.partition_of(campaign_id, 0, PARTITIONS)
    return cluster.slot_owner(key_slot(keyspace.epoch(partition).encode())).port


@pytest.fixture(scope="module")
def shop(valkey_cluster: Cluster, cluster_stack: Stack) -> Shop:
    """A merchant, a store, a till and CAMPAIGNS campaigns of CODES codes, two on each primary.

    Consecutive campaign ids share a partition in runs of eight (the partition hash), so
    campaigns are made until each primary holds two."""
    merchant = cluster_stack.new_merchant()
    store_id = merchant.created("/v1/stores", {"name": "Flagship"})["id"]
    token = merchant.terminal_token(store_id)
    per_primary: dict[int, list[int]] = {node.port: [] for node in valkey_cluster.live_primaries()}
    for _ in range(100):
        campaign_id = merchant.campaign()
        chosen = per_primary[_primary_of(valkey_cluster, campaign_id)]
        if len(chosen) < CAMPAIGNS // len(per_primary):
            chosen.append(campaign_id)
        if sum(map(len, per_primary.values())) == CAMPAIGNS:
            break
    ids = sorted(i for chosen in per_primary.values() for i in chosen)
    campaigns = [_campaign(cluster_stack, merchant, i) for i in ids]
    return Shop(merchant, store_id, token, campaigns)


def test_campaigns_span_every_primary(valkey_cluster: Cluster, shop: Shop) -> None:
    """The test's campaigns keep their state on all three primaries, so what follows crosses
    every node of the cluster."""
    primaries = {node.port for node in valkey_cluster.live_primaries()}
    assert {_primary_of(valkey_cluster, c.id) for c in shop.campaigns} == primaries


def test_redeem_replay_reverse_void_and_settle(cluster_stack: Stack, shop: Shop) -> None:
    """On every campaign: a code redeems once (its till's retry gets the same answer, any
    other scan 409 already_redeemed, /v1/check says so); a reversal frees it for a second
    use; a voided code is refused 409 voided; every redemption, reversal and void settles
    into PostgreSQL exactly once (the backlog gauge falls to 0), and the stats count them."""
    redeemed: dict[int, set[str]] = {}
    for campaign in shop.campaigns:
        code, nonce = campaign.codes[0], uuid.uuid4().hex
        first = redeem(cluster_stack, shop.token, code, nonce)
        assert first.status_code == 200, first.text
        retried = redeem(cluster_stack, shop.token, code, nonce)
        assert retried.json()["redemption_id"] == first.json()["redemption_id"]
        replay = redeem(cluster_stack, shop.token, code)
        assert (replay.status_code, reason(replay)) == (409, "already_redeemed")
        assert check_status(cluster_stack, shop.token, code) == "already_redeemed"
        assert check_status(cluster_stack, shop.token, campaign.codes[1]) == "valid"
        redemption = first.json()["redemption_id"]
        reverse = till(cluster_stack, f"/v1/redemptions/{redemption}/reverse", shop.token, {})
        assert reverse.status_code == 200, reverse.text
        second = redeem(cluster_stack, shop.token, code)
        assert second.status_code == 200, second.text
        assert second.json()["redemption_id"] == f"{campaign.id}-{first.json()['serial']}-2"
        redeemed[campaign.id] = {redemption, second.json()["redemption_id"]}

    voided = shop.merchant.post("/v1/codes/void", {"codes": [c.codes[2] for c in shop.campaigns]})
    assert voided.json() == {"voided": CAMPAIGNS}
    for campaign in shop.campaigns:
        refused = redeem(cluster_stack, shop.token, campaign.codes[2])
        assert (refused.status_code, reason(refused)) == (409, "voided")

    def settled() -> bool:
        return all(
            fetchval(
                cluster_stack,
                "SELECT (SELECT count(*) FROM redemptions WHERE campaign_id = $1)"
                " + (SELECT count(*) FROM reversals WHERE campaign_id = $1)"
                " + (SELECT count(*) FROM voids WHERE campaign_id = $1)",
                c.id,
            )
            == 4
            for c in shop.campaigns
        )

    eventually(settled, within=60)
    # The backlog gauge reads every partition's consumer group, node by node.
    eventually(lambda: sample(cluster_stack.base_url, "qrloop_settlement_backlog") == 0, 60)
    for campaign in shop.campaigns:
        settled_exactly_once(cluster_stack, campaign.id, redeemed[campaign.id])
        stats = shop.merchant.get(f"/v1/campaigns/{campaign.id}/stats").json()
        assert (stats["redeemed"], stats["reversed"], stats["voided"]) == (1, 1, 1)
        assert stats["settled"] == 2


def test_claims_from_a_link_and_a_pool(cluster_stack: Stack, shop: Shop) -> None:
    """A claim link and a pool (its own slot, `{pool:ID}`) hand out codes after a one-time
    code; the claimed codes redeem, and the claims settle."""
    linked = shop.campaigns[0]
    with httpx.Client(base_url=cluster_stack.base_url, timeout=30) as browser:
        claimed = claim_with_code(
            cluster_stack, browser, linked.links[3], "ana@example.com", "ana@example.com"
        )
        assert claimed.status_code == 303, claimed.text
        assert "<svg" in browser.get(linked.links[3]).text
    assert redeem(cluster_stack, shop.token, linked.codes[3]).status_code == 200

    pooled = shop.campaigns[1]
    pool = shop.merchant.created(
        f"/v1/campaigns/{pooled.id}/pools", {"order_id": pooled.order_id, "per_consumer": 1}
    )
    path = pool["url"].removeprefix(cluster_stack.base_url)
    with httpx.Client(base_url=cluster_stack.base_url, timeout=30) as browser:
        handed = claim_with_code(cluster_stack, browser, path, "bo@example.com", "bo@example.com")
        assert handed.status_code == 303, handed.text
        assert handed.headers["location"] in pooled.links
        again = claim_with_code(cluster_stack, browser, path, "bo@example.com", "bo@example.com")
        assert again.status_code == 409
    assert shop.merchant.get(f"/v1/pools/{pool['id']}").json()["handed_out"] >= 1

    def claims() -> int:
        count: int = fetchval(
            cluster_stack,
            "SELECT count(*) FROM claims WHERE campaign_id = ANY($1::bigint[])",
            [linked.id, pooled.id],
        )
        return count

    eventually(lambda: claims() == 2, within=60)


def test_invalid_scans_block_the_terminal(cluster_stack: Stack, shop: Shop) -> None:
    """The invalid-scan counter and the blocked-terminal set live on the cluster too: the 11th
    invalid scan in a minute is refused 429, and the refresher keeps the block in every
    process."""
    token = shop.merchant.terminal_token(shop.store_id, "guesser")
    # The limit counts per clock minute: start well inside one so all eleven land in it.
    if time.time() % 60 > 45:
        eventually(lambda: time.time() % 60 < 45, within=16)
    answers = [redeem(cluster_stack, token, "A" * 45).status_code for _ in range(11)]
    assert answers == [422] * 10 + [429]
    assert reason(redeem(cluster_stack, token, shop.campaigns[0].codes[4])) == "rate_limited"


def test_reconcile_then_rebuild_a_primary_that_lost_its_data(
    valkey_cluster: Cluster, cluster_stack: Stack, shop: Shop
) -> None:
    """`qrloop reconcile` finds Redis and PostgreSQL in agreement. When one primary loses its
    data (FLUSHALL), its partitions' codes are refused 503 and readiness says so; `reconcile
    --rehydrate` rebuilds them from PostgreSQL, after which a used code is refused again, a
    fresh one redeems and settles (the lost consumer groups are made again), and reconcile
    agrees once more."""
    eventually(lambda: cluster_stack.cli("reconcile", check=False).stdout.strip() == AGREE, 60)
    lost = shop.campaigns[0]
    node = next(n for n in valkey_cluster.nodes if n.port == _primary_of(valkey_cluster, lost.id))
    with node.client() as client:
        client.flushall()
    refused = redeem(cluster_stack, shop.token, lost.codes[0])
    assert (refused.status_code, reason(refused)) == (503, "unavailable")
    assert httpx.get(cluster_stack.base_url + "/health/ready").status_code == 503
    assert cluster_stack.cli("reconcile", check=False).returncode == 1

    rebuilt = cluster_stack.cli("reconcile", "--rehydrate", check=False)
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert httpx.get(cluster_stack.base_url + "/health/ready").status_code == 200
    replay = redeem(cluster_stack, shop.token, lost.codes[0])
    assert (replay.status_code, reason(replay)) == (409, "already_redeemed")
    fresh = redeem(cluster_stack, shop.token, lost.codes[5])
    assert fresh.status_code == 200, fresh.text
    serial = fresh.json()["serial"]
    eventually(
        lambda: (
            fetchval(
                cluster_stack,
                "SELECT count(*) FROM redemptions WHERE campaign_id = $1 AND serial = $2",
                lost.id,
                serial,
            )
            == 1
        ),
        within=60,
    )
    eventually(lambda: cluster_stack.cli("reconcile", check=False).stdout.strip() == AGREE, 60)
