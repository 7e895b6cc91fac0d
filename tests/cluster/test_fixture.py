"""The test cluster itself: formed as asked, and able to move a slot under a live key."""

from __future__ import annotations

from cluster_support import SLOTS, Cluster


def test_cluster_has_three_primaries_each_with_a_synced_replica(valkey_cluster: Cluster) -> None:
    """Three primaries share all 16384 slots, and each has one replica linked to it."""
    primaries = valkey_cluster.live_primaries()
    assert len(primaries) == 3
    for primary in primaries:
        replication = primary.info("replication")
        assert replication["connected_slaves"] == 1
        assert replication["slave0"]["state"] == "online"
    info = primaries[0].cluster_info()
    assert int(info["cluster_slots_assigned"]) == SLOTS
    assert int(info["cluster_slots_ok"]) == SLOTS
    assert int(info["cluster_known_nodes"]) == 6


def test_moving_a_slot_moves_its_keys(valkey_cluster: Cluster) -> None:
    """A key in a slot moved to another primary is served, unchanged, by the new owner."""
    with valkey_cluster.client() as client:
        client.set("fixture:{move}:key", "kept")
        slot = client.keyslot("fixture:{move}:key")
        source = valkey_cluster.slot_owner(slot)
        target = next(node for node in valkey_cluster.live_primaries() if node is not source)
        assert valkey_cluster.move_slot(slot, target) is source
        assert valkey_cluster.slot_owner(slot) is target
        with target.client() as owner:
            assert owner.get("fixture:{move}:key") == b"kept"
        assert client.get("fixture:{move}:key") == b"kept"
        client.delete("fixture:{move}:key")
    valkey_cluster.wait_healthy()
