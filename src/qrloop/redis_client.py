"""The one way every qrloop process (API, worker, signer, CLI) opens Redis: a single server or
a Redis/Valkey Cluster, whichever REDIS_URL names, found out by asking that node.

`REDIS_URL` may name any node of a cluster; `INFO cluster` on it says `cluster_enabled:1`,
and the client then follows the cluster's slot map (MOVED, ASK, failovers) by itself. The hot
path has its own pipelining client (`redemption/pipe.py`), told the same answer.

The URL's `user:password@` is sent as `AUTH user password` (an ACL user) on every connection.
`rediss://` is TLS: the server's certificate is checked against QRLOOP_REDIS_TLS_CA (else the
system's CAs), and QRLOOP_REDIS_TLS_CERT/KEY is the client certificate for a server that asks
for one. Every connection made here, redis-py's or the hot path's, gets the same `Tls`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

if TYPE_CHECKING:
    from qrloop.settings import Settings

Client = redis.Redis | RedisCluster
"""What the non-hot paths talk to; both speak the same commands (a cluster routes each by its
key's hash slot, so every multi-key command and script stays within one partition's tag)."""

AnyPipeline = Pipeline | ClusterPipeline


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme == "rediss"


def tls_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and name, and presents the
    client certificate when one is given. Raises ValueError naming what it cannot load."""
    try:
        context = ssl.create_default_context(cafile=ca)
    except OSError as error:  # ssl.SSLError included
        raise ValueError(f"QRLOOP_REDIS_TLS_CA: cannot load {ca}: {error}") from None
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except OSError as error:
            raise ValueError(
                f"QRLOOP_REDIS_TLS_CERT, QRLOOP_REDIS_TLS_KEY: cannot load {cert}: {error}"
            ) from None
    return context


@dataclass(frozen=True, slots=True)
class Tls:
    """The TLS files for a rediss:// URL (all None: the system's CAs, no client certificate)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def of(cls, settings: Settings) -> Tls:
        return cls(settings.redis_tls_ca, settings.redis_tls_cert, settings.redis_tls_key)

    def context(self) -> ssl.SSLContext:
        """For the hot path's own connections."""
        return tls_context(self.ca, self.cert, self.key)

    def options(self, url: str) -> dict[str, Any]:
        """redis-py's connection options for `url`: TLS with these files for rediss://."""
        if not uses_tls(url):
            return {}
        return {
            "ssl_cert_reqs": "required",
            "ssl_ca_certs": _text(self.ca),
            "ssl_certfile": _text(self.cert),
            "ssl_keyfile": _text(self.key),
        }


NO_TLS = Tls()


async def cluster_enabled(url: str, tls: Tls = NO_TLS, wait_seconds: float = 5.0) -> bool:
    """Whether the node `url` names runs in cluster mode. A Unix socket is never a cluster's
    (a cluster's nodes tell each other TCP addresses), so that asks nothing."""
    if url.startswith("unix://"):
        return False
    probe = redis.Redis.from_url(
        url,
        socket_timeout=wait_seconds,
        socket_connect_timeout=wait_seconds,
        **tls.options(url),
    )
    try:
        info: dict[str, Any] = await probe.info("cluster")
    finally:
        await probe.aclose()
    return bool(info.get("cluster_enabled"))


def client_for(url: str, cluster: bool, tls: Tls = NO_TLS, **options: Any) -> Client:
    """A client for `url`: a cluster client (following the slot map) when `cluster`.
    `options` are redis-py connection options (timeouts, pool size), the same for both."""
    options |= tls.options(url)
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


async def connect(url: str, tls: Tls = NO_TLS, **options: Any) -> Client:
    """A client for `url`, cluster or single server as the node says; raises RedisError when
    the node cannot be asked (the caller fails, and is restarted or retried)."""
    return client_for(url, await cluster_enabled(url, tls), tls, **options)


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


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
