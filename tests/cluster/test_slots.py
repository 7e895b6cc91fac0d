"""Every Lua call stays in one hash slot: the KEYS of every script, for every partition, hash
to one slot by the partition's (or the pool's) tag, as the cluster itself computes it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

import qrloop
from cluster_support import Cluster
from qrloop import keyspace

PARTITIONS = 16
# Codes whose state lands in every partition: serials in several 2^20 chunks of a few campaigns.
CODES = [
    (campaign, chunk << keyspace.CHUNK_BITS | 7) for campaign in (1, 2, 99) for chunk in range(40)
]
SCRIPTS = {path.name for path in Path(qrloop.__file__).parent.rglob("*.lua")}


def _code_keys(
    build: Callable[[int, int, int], tuple[str, ...]],
) -> Callable[[], Iterator[tuple[str, ...]]]:
    def calls() -> Iterator[tuple[str, ...]]:
        for campaign, serial in CODES:
            yield build(keyspace.partition_of(campaign, serial, PARTITIONS), campaign, serial)

    return calls


def _single(*keys: str) -> Callable[[], Iterator[tuple[str, ...]]]:
    return lambda: iter([(key,) for key in keys])


# Each script of the package → the KEYS lists qrloop calls it with.
CALLS: dict[str, Callable[[], Iterator[tuple[str, ...]]]] = {
    "redeem.lua": _code_keys(keyspace.redeem_keys),
    "check.lua": _code_keys(keyspace.check_keys),
    "reverse.lua": _code_keys(keyspace.reverse_keys),
    "claim.lua": _code_keys(keyspace.claim_keys),
    "void.lua": _code_keys(keyspace.void_keys),
    "pool.lua": lambda: (keyspace.pool_keys(pool) for pool in ("p1", "AbC-9_x", "42")),
    "pool_skip.lua": lambda: (keyspace.pool_keys(pool) for pool in ("p1", "AbC-9_x", "42")),
    "send_take.lua": _single(
        keyspace.sends_per_link(1, 2), keyspace.sends_per_pool("p1"),
        keyspace.sends_per_address("203.0.113.9"), keyspace.otp_sends("hash"),
    ),
    "send_give_back.lua": _single(keyspace.sends_per_pool("p1"), keyspace.otp_sends("hash")),
    "otp_try.lua": _single(keyspace.otp_challenge("challenge-id")),
}  # fmt: skip


def test_every_script_is_covered() -> None:
    """The table above names every Lua script qrloop ships, so a new one cannot skip the check."""
    assert set(CALLS) == SCRIPTS


def test_the_code_calls_reach_every_partition() -> None:
    """The sample codes cover all partitions, so the check below holds for each of them."""
    assert {keyspace.partition_of(c, s, PARTITIONS) for c, s in CODES} == set(range(PARTITIONS))


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_call_hashes_to_one_slot(script: str, valkey_cluster: Cluster) -> None:
    """All KEYS of each call share one slot, by Valkey's own CLUSTER KEYSLOT as well as by the
    CRC16 qrloop's cluster client routes with; a partition's keys all share its tag's slot."""
    with valkey_cluster.nodes[0].client() as node:
        for keys in CALLS[script]():
            slots = {node.execute_command("CLUSTER KEYSLOT", key) for key in keys}
            assert len(slots) == 1, (script, keys, slots)
            assert {key_slot(key.encode()) for key in keys} == slots
            if "{p" in keys[0]:
                tag = keys[0].split("{", 1)[1].split("}", 1)[0]
                assert slots == {key_slot(tag.encode())}
