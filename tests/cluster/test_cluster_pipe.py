"""The hot path's cluster client against a real cluster: it finds the slot map from any node
and follows it through a live resharding (ASK while a slot moves, TRYAGAIN while the keys of a
call are split between two nodes, MOVED once it has moved), and fails closed when no node
answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.crc import key_slot
from redis.exceptions import RedisError

from cluster_support import Cluster, Node
from qrloop import keyspace, lua
from qrloop.redemption.cluster import ClusterPipe
from qrloop.redemption.pipe import Script
from support import free_port

CHECK = Script(lua.source("qrloop.redemption", "check.lua", keyspace.CheckKeys._fields))
PARTITION, CAMPAIGN, SERIAL = 5, 1, 3
SLOT = key_slot(keyspace.epoch(PARTITION).encode())


def _stat(node: Node, section: str, name: str) -> int:
    """A counter of INFO commandstats / errorstats (0 before its first use)."""
    found = node.info(section).get(name, {})
    return int(found.get("calls", found.get("count", 0)))


@pytest.fixture
def used_code(valkey_cluster: Cluster) -> Iterator[keyspace.CheckKeys]:
    """A code of partition PARTITION that is used (its epoch, used and void keys all exist),
    its slot given back to its first owner at the end."""
    valkey_cluster.flush()
    keys = keyspace.check_keys(PARTITION, CAMPAIGN, SERIAL)
    owner = valkey_cluster.slot_owner(SLOT)
    with valkey_cluster.client() as client:
        client.set(keys.epoch, 1)
        client.setbit(keys.used, keyspace.bit_offset(SERIAL), 1)
        client.setbit(keys.void, keyspace.bit_offset(SERIAL) + 1, 1)
    yield keys
    if valkey_cluster.slot_owner(SLOT) is not owner:
        valkey_cluster.move_slot(SLOT, owner)
    valkey_cluster.wait_healthy()


@pytest.fixture
async def pipe(valkey_cluster: Cluster) -> AsyncIterator[ClusterPipe]:
    """A ClusterPipe seeded with a replica's address, with time to ride out a slow migration."""
    replica = valkey_cluster.node(next(iter(valkey_cluster.replicas_of.values()))[0])
    client = ClusterPipe(replica.url, timeout=10)
    yield client
    await client.close()


def _other_primary(cluster: Cluster) -> Node:
    owner = cluster.slot_owner(SLOT)
    return next(node for node in cluster.live_primaries() if node is not owner)


async def test_every_call_reaches_the_primary_of_its_slot(
    valkey_cluster: Cluster, pipe: ClusterPipe
) -> None:
    """Seeded with a replica, each partition's key is written on the primary serving its slot."""
    valkey_cluster.flush()
    for partition in range(16):
        await pipe.call("SET", keyspace.epoch(partition), partition)
    for partition in range(16):
        owner = valkey_cluster.slot_owner(key_slot(keyspace.epoch(partition).encode()))
        with owner.client() as node:
            assert node.get(keyspace.epoch(partition)) == str(partition).encode()


async def test_ask_while_the_slot_moves_then_moved(
    valkey_cluster: Cluster, used_code: keyspace.CheckKeys, pipe: ClusterPipe
) -> None:
    """Keys already at the importing node are read there behind ASKING; once the slot has
    moved, the MOVED answer sends every later call straight to the new owner."""
    offset = keyspace.bit_offset(SERIAL)
    assert await pipe.evalsha(CHECK, used_code, [offset]) == b"already_redeemed"
    target = _other_primary(valkey_cluster)
    source = valkey_cluster.begin_migration(SLOT, target)
    valkey_cluster.migrate_keys(SLOT, source, target)
    asked = _stat(target, "commandstats", "cmdstat_asking")
    assert await pipe.evalsha(CHECK, used_code, [offset]) == b"already_redeemed"
    assert await pipe.evalsha(CHECK, used_code, [offset + 1]) == b"voided"
    # Two calls, one ASKING each, and one more for the first: the importing node had not seen
    # the script, so it was loaded there and the call sent again.
    assert _stat(target, "commandstats", "cmdstat_asking") == asked + 3

    valkey_cluster.end_migration(SLOT, source, target)
    assert await pipe.evalsha(CHECK, used_code, [offset]) == b"already_redeemed"
    at_source = _stat(source, "commandstats", "cmdstat_evalsha")
    for _ in range(5):
        assert await pipe.evalsha(CHECK, used_code, [offset + 2]) == b"valid"
    assert _stat(source, "commandstats", "cmdstat_evalsha") == at_source


async def test_a_call_whose_keys_are_split_waits_for_the_move(
    valkey_cluster: Cluster, used_code: keyspace.CheckKeys, pipe: ClusterPipe
) -> None:
    """While some of a call's keys have moved and others not, the nodes answer TRYAGAIN; the
    call is retried until the slot has moved, and then answered as before."""
    target = _other_primary(valkey_cluster)
    source = valkey_cluster.begin_migration(SLOT, target)
    with source.client() as node:
        node.execute_command("MIGRATE", "127.0.0.1", target.port, used_code.epoch, 0, 5000)
    refused = _stat(source, "errorstats", "errorstat_TRYAGAIN")
    call = asyncio.create_task(pipe.evalsha(CHECK, used_code, [keyspace.bit_offset(SERIAL)]))
    deadline = asyncio.get_running_loop().time() + 10
    while _stat(source, "errorstats", "errorstat_TRYAGAIN") == refused:
        assert asyncio.get_running_loop().time() < deadline, "the call never met TRYAGAIN"
        await asyncio.sleep(0.01)
    assert not call.done()
    await asyncio.to_thread(valkey_cluster.migrate_keys, SLOT, source, target)
    await asyncio.to_thread(valkey_cluster.end_migration, SLOT, source, target)
    assert await call == b"already_redeemed"


async def test_no_node_answering_fails_closed() -> None:
    """With no node to ask for the slot map, a call raises a Redis error (the till's 503)."""
    pipe = ClusterPipe(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    with pytest.raises(RedisError):
        await pipe.evalsha(CHECK, keyspace.check_keys(0, 1, 1), [1])
    await pipe.close()


async def test_a_failover_is_followed(valkey_cluster: Cluster, pipe: ClusterPipe) -> None:
    """The primary of a slot is killed: calls fail (the till's 503) until its replica has taken
    over, then reach the new primary and read what was replicated before; the old primary
    comes back as a replica."""
    valkey_cluster.flush()
    key = keyspace.epoch(PARTITION)
    await pipe.call("SET", key, "before")
    owner = valkey_cluster.slot_owner(SLOT)
    with owner.client() as node:
        assert node.execute_command("WAIT", 1, 5000) == 1
    owner.kill()

    async def read() -> bytes | None:
        try:
            value: bytes | None = await pipe.call("GET", key)
        except RedisError:
            return None
        return value

    deadline = asyncio.get_running_loop().time() + 60
    while (value := await read()) is None:
        assert asyncio.get_running_loop().time() < deadline, "no replica took over"
    assert value == b"before"
    assert valkey_cluster.slot_owner(SLOT) is not owner
    owner.start(valkey_cluster.node_timeout_ms)
    valkey_cluster.wait_healthy()
    assert owner.info("replication")["role"] == "slave"
