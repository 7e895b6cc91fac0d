"""A live resharding under the tills: the slot holding a campaign's partition moves to another
primary (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE key by key, SETSLOT NODE) while tills
redeem its codes through `qrloop serve`."""

from __future__ import annotations

import time
from collections import Counter

from redis.crc import key_slot

from cluster_support import Cluster, Node
from qrloop import keyspace
from support import Load, Stack, eventually, fetchval, settled_exactly_once, tills

BEFORE, DURING = 100, 300  # codes redeemed before the move, and while and after it happens


def _moved_answers(node: Node) -> int:
    return int(node.info("errorstats").get("errorstat_MOVED", {}).get("count", 0))


def test_redemptions_go_on_while_their_partition_moves(
    valkey_cluster: Cluster, cluster_stack: Stack
) -> None:
    """Four tills redeem at 100 codes/s while the partition's slot moves, ten keys per MIGRATE:
    every code is answered 200 exactly once (no 503: calls meeting a half-moved slot are
    retried until it has moved, then follow the MOVED answer), every code scanned again
    afterwards is refused 409 already_redeemed, and every redemption settles exactly once from
    the stream, which moved with its consumer group."""
    merchant = cluster_stack.new_merchant()
    tokens = tills(merchant, 4)
    campaign = merchant.campaign()
    codes = merchant.codes(campaign, BEFORE + DURING)
    slot = key_slot(keyspace.epoch(keyspace.partition_of(campaign, 0, 16)).encode())
    with Load(cluster_stack.base_url, tokens, codes[:BEFORE], concurrency=8) as warm:
        attempts = warm.finish(within=60)  # the slot now holds a last use per code, to move

    source = valkey_cluster.slot_owner(slot)
    target = next(node for node in valkey_cluster.live_primaries() if node is not source)
    redirected = _moved_answers(source)
    with Load(cluster_stack.base_url, tokens, codes[BEFORE:], concurrency=8, rate=100) as load:
        eventually(lambda: load.count() >= 20, within=30)
        assert valkey_cluster.begin_migration(slot, target) is source
        assert valkey_cluster.migrate_keys(slot, source, target, batch=10) > BEFORE
        valkey_cluster.end_migration(slot, source, target)
        moved = time.monotonic()
        eventually(lambda: load.count(sent_after=moved) >= 20, within=30)
        attempts += load.finish(within=60)
    assert _moved_answers(source) > redirected
    assert Counter(a.status for a in attempts) == {200: BEFORE + DURING}
    assert Counter(a.code for a in attempts) == Counter(codes)

    with Load(cluster_stack.base_url, tokens, codes, concurrency=8) as again:
        rescans = again.finish(within=60)
    assert Counter((a.status, a.reason) for a in rescans) == {
        (409, "already_redeemed"): BEFORE + DURING
    }

    redeemed = {a.redemption_id for a in attempts if a.redemption_id}

    def settled() -> int:
        count: int = fetchval(
            cluster_stack, "SELECT count(*) FROM redemptions WHERE campaign_id = $1", campaign
        )
        return count

    eventually(lambda: settled() == len(redeemed), within=60)
    settled_exactly_once(cluster_stack, campaign, redeemed)
    valkey_cluster.move_slot(slot, source)
    valkey_cluster.wait_healthy()
