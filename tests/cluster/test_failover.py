"""kill -9 of a cluster primary under 500 redeems/s while its replica lags behind: the replica
takes over, redemptions go on, and with QRLOOP_REDIS_DURABILITY=replicated no acknowledged
redemption is lost. With `local` the same run measures how many acknowledged redemptions the
failover lost.

On loopback a replica is never more than microseconds behind (even a SIGSTOPped one: what
the primary sent waits in the kernel's socket buffers and is read on SIGCONT), so a plain kill
loses nothing whatever the setting, and proves nothing. The replica is cut off instead, as a
network partition would: the primary stops letting the replication user in and drops its link,
100 more scans are answered (with `local`, 200s; with `replicated`, the killed shard's 503s),
then the primary is killed, and the replica takes over with what it has."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.crc import key_slot

from cluster_support import Cluster, Node, running_cluster
from qrloop import keyspace
from redis_servers import QRLOOP_PASSWORD, acl_rule, readme_acl_permissions
from support import (
    Load,
    Stack,
    Stores,
    eventually,
    fetchval,
    serving_on_redis,
    settled_exactly_once,
    tills,
)

REPLICATION = ("replicator", "replication-secret")  # the user replicas sync as
PARTITIONS = 16
CODES = 2_000
RATE = 500  # new scans a second
NODE_TIMEOUT_MS = 3000  # short, so the replica takes over within seconds (not shorter:
# on a busy two-core machine nodes would time each other out)
LAGGED = 100  # scans answered while the replica is paused, before the kill
SETTLED = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"


@dataclass
class Failover:
    """What one run saw."""

    acknowledged: set[str]  # redemption ids answered 200
    answered_twice: int  # codes a second till could redeem again afterwards
    victim_codes_after_takeover: int  # 200s, sent after the takeover, on the killed shard
    statuses: Counter[tuple[int, str | None]]


def _partitions_of(cluster: Cluster, node: Node) -> list[int]:
    return [
        partition
        for partition in range(PARTITIONS)
        if cluster.slot_owner(key_slot(keyspace.epoch(partition).encode())) is node
    ]


def _victim(cluster: Cluster) -> Node:
    """The primary holding the most partitions."""
    return max(cluster.live_primaries(), key=lambda node: len(_partitions_of(cluster, node)))


@pytest.fixture
def failover_cluster(scratch_dir: Path) -> Iterator[Cluster]:
    """A cluster of this test's own (3 primaries, a replica each, 3 s node timeout) with
    qrloop's ACL user on every node."""
    options = (
        *acl_rule("qrloop", QRLOOP_PASSWORD, " ".join(readme_acl_permissions())),
        *acl_rule(*REPLICATION, "+psync +replconf +ping"),
        "--masteruser", REPLICATION[0], "--masterauth", REPLICATION[1],
    )  # fmt: skip
    with running_cluster(
        scratch_dir / "cluster", node_timeout_ms=NODE_TIMEOUT_MS, node_options=options
    ) as cluster:
        yield cluster


def _kill_and_heal(cluster: Cluster, victim: Node, load: Load) -> float:
    """Cut `victim`'s replica off; once LAGGED more scans are answered, kill -9 `victim`; wait
    for the replica's takeover; restart `victim` (it comes back as the new primary's replica,
    letting the replication user in again); return when the takeover happened."""
    successor = cluster.node(cluster.replicas_of[victim.id][0])
    with victim.client() as primary:
        primary.execute_command("ACL", "SETUSER", REPLICATION[0], "off")
        primary.execute_command("CLIENT", "KILL", "USER", REPLICATION[0])
    eventually(lambda: successor.info("replication")["master_link_status"] == "down", within=10)
    cut = time.monotonic()
    eventually(lambda: load.count(sent_after=cut) >= LAGGED, within=30)
    victim.kill()
    eventually(lambda: successor.info("replication")["role"] == "master", within=30)
    took_over = time.monotonic()
    victim.start(cluster.node_timeout_ms)
    cluster.wait_healthy()
    return took_over


def _run(stack: Stack, cluster: Cluster, victim: Node) -> Failover:
    merchant = stack.new_merchant()
    tokens = tills(merchant, 4)
    campaign = merchant.campaign()
    codes = merchant.codes(campaign, CODES)
    on_victim = set(_partitions_of(cluster, victim))
    # A till that gets 503, or no answer at all, retries with the same nonce.
    load = Load(stack.base_url, tokens[:3], codes, rate=RATE, retry=frozenset({0, 503}))
    with load:
        eventually(lambda: load.count(200) >= CODES // 4, within=60)
        took_over = _kill_and_heal(cluster, victim, load)
        attempts = load.finish(within=180)

    assert {a.status for a in attempts} <= {0, 200, 503}
    assert Counter(a.code for a in attempts if a.status == 200) == Counter(codes)
    acknowledged = {a.redemption_id for a in attempts if a.redemption_id}

    def on_killed_shard(redemption_id: str) -> bool:
        campaign_id, serial, _ = map(int, redemption_id.split("-"))
        return keyspace.partition_of(campaign_id, serial, PARTITIONS) in on_victim

    after = [a for a in attempts if a.status == 200 and a.sent > took_over]
    with Load(stack.base_url, tokens[3:], codes, retry=frozenset({0, 503})) as again:
        rescans = again.finish(within=120)
    return Failover(
        acknowledged=acknowledged,
        answered_twice=sum(a.status == 200 for a in rescans),
        victim_codes_after_takeover=sum(on_killed_shard(a.redemption_id or "") for a in after),
        statuses=Counter((a.status, a.reason) for a in rescans),
    )


@pytest.mark.parametrize("durability", ["replicated", "local"])
def test_primary_killed_under_load(
    durability: str, failover_cluster: Cluster, stores: Stores, scratch_dir: Path
) -> None:
    """3 tills scan 2,000 codes at 500 a second (32 at a time; a 503, or no answer, retried
    with its nonce a second later) through qrloop's ACL user; the primary holding the most
    partitions is kill -9'd while cut off from its replica, the replica takes over, and the
    killed node comes back as its replica. Every code is answered 200 exactly once in the run,
    including codes of the killed shard scanned after the takeover, and no command of qrloop's
    is refused by the ACL. Then a fourth till scans every code again. With `replicated` it
    gets 409 already_redeemed for every one (nothing acknowledged was lost) and PostgreSQL
    holds exactly the redemptions answered 200; with `local` the number it could redeem again
    is what the failover lost, printed (run with -s to see it)."""
    cluster = failover_cluster
    victim = _victim(cluster)
    seed = next(node for node in cluster.nodes if node is not victim and node.alive)
    url = f"redis://qrloop:{QRLOOP_PASSWORD}@127.0.0.1:{seed.port}/0"
    settings = {"QRLOOP_REDIS_DURABILITY": durability}
    with serving_on_redis(stores.database_url, url, scratch_dir / "serve", **settings) as stack:
        outcome = _run(stack, cluster, victim)
        print(
            f"\n{durability}: {outcome.answered_twice} of {len(outcome.acknowledged)}"
            " acknowledged redemptions could be redeemed again after the failover"
        )
        assert outcome.victim_codes_after_takeover > 0, "the killed shard's codes went on"
        if durability == "replicated":
            assert outcome.statuses == {(409, "already_redeemed"): CODES}
            campaign = int(next(iter(outcome.acknowledged)).split("-")[0])
            eventually(lambda: fetchval(stack, SETTLED, campaign) >= CODES, within=60)
            settled_exactly_once(stack, campaign, outcome.acknowledged)
    for node in cluster.nodes:
        with node.client() as client:
            refused = client.execute_command("ACL", "LOG")
        assert not [e for e in refused if e[b"username"] == b"qrloop"], "qrloop was refused"
