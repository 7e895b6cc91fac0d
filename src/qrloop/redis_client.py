"""The one way every qrloop process (API, worker, signer, CLI) opens Redis: a single server or
a Redis/Valkey Cluster, whichever REDIS_URL names, found out by asking that node.

`REDIS_URL` may name any node of a cluster; `INFO cluster` on it says `cluster_enabled:1`,
and the client then follows the cluster's slot map (MOVED, ASK, failovers) by itself. The hot
path has its own pipelining client (`redemption/pipe.py`), told the same answer.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

Client = redis.Redis | RedisCluster
"""What the non-hot paths talk to; both speak the same commands (a cluster routes each by its
key's hash slot, so every multi-key command and script stays within one partition's tag)."""

AnyPipeline = Pipeline | ClusterPipeline


async def cluster_enabled(url: str, wait_seconds: float = 5.0) -> bool:
    """Whether the node `url` names runs in cluster mode. A Unix socket is never a cluster's
    (a cluster's nodes tell each other TCP addresses), so that asks nothing."""
    if url.startswith("unix://"):
        return False
    probe = redis.Redis.from_url(
        url, socket_timeout=wait_seconds, socket_connect_timeout=wait_seconds
    )
    try:
        info: dict[str, Any] = await probe.info("cluster")
    finally:
        await probe.aclose()
    return bool(info.get("cluster_enabled"))


def client_for(url: str, cluster: bool, **options: Any) -> Client:
    """A client for `url`: a cluster client (following the slot map) when `cluster`.
    `options` are redis-py connection options (timeouts, pool size), the same for both."""
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


async def connect(url: str, **options: Any) -> Client:
    """A client for `url`, cluster or single server as the node says; raises RedisError when
    the node cannot be asked (the caller fails, and is restarted or retried)."""
    return client_for(url, await cluster_enabled(url), **options)


def is_cluster(client: Client) -> bool:
    return isinstance(client, RedisCluster)


async def ping(client: Client) -> None:
    """Raise unless Redis answers: the server, or every primary of a cluster (a replica that is
    down stops no work; redis-py's own cluster PING would ask every node)."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()


async def loaded(client: Client, script: str) -> str:
    """The SHA-1 of `script`, once loaded on the server (on a cluster, on every primary), for
    a pipeline of EVALSHAs. A cluster's pipeline neither loads scripts nor offers `evalsha`
    (it could not load one mid-pipeline); `execute_command("EVALSHA", ...)` routes by the
    keys, on both kinds of pipeline."""
    sha: str = await client.script_load(script)
    return sha
