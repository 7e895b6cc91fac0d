"""The hot path's client for a Redis/Valkey Cluster: one auto-pipelining connection
(`RedisPipe`) per primary, each call sent to the primary that serves its key's hash slot.

Every key of one script call carries its partition's hash tag (`{p7}`), so the first key names
the slot of the whole call. The slot map comes from CLUSTER SLOTS, asked of any node that
answers (REDIS_URL may name any node), and is kept current by what the nodes say:

* MOVED (the slot has a new owner, after a resharding or a failover): note the owner, retry
  there at once, and re-read the whole map in the background.
* ASK (the slot is being moved and this key is already at the importing node): retry once
  there behind an ASKING, leaving the map as it is.
* TRYAGAIN (a migrating slot holds some of the call's keys and not others) and CLUSTERDOWN
  (a failover in progress): retry after a short pause.
* A node that cannot be reached: re-read the map (its replica may have taken over) and retry.

All within the call's time budget (the connection timeout); past it the call raises and the
till answers 503, as it does when a single server cannot answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl as tls
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from qrloop import redis_client
from qrloop.redemption.pipe import (
    Arg,
    Confirmation,
    Pipe,
    RedisPipe,
    Script,
    parse_address,
)
from qrloop.settings import Settings

# Redirections followed at once; past these, each further one waits like a TRYAGAIN.
_IMMEDIATE_REDIRECTS = 3
_FIRST_PAUSE_SECONDS = 0.005
_LONGEST_PAUSE_SECONDS = 0.1
_RETRIED = ("TRYAGAIN", "CLUSTERDOWN")

Send = Callable[[RedisPipe, bool], Awaitable[Any]]


def pipe_for(
    url: str,
    cluster: bool,
    *,
    timeout: float = 2.0,
    ssl: tls.SSLContext | None = None,
    confirm: Confirmation | None = None,
) -> Pipe:
    """The hot path's client for REDIS_URL: a ClusterPipe on a cluster, else one RedisPipe.
    `ssl` and `confirm` go to every connection (see RedisPipe)."""
    if cluster:
        return ClusterPipe(url, timeout=timeout, ssl=ssl, confirm=confirm)
    return RedisPipe(url, timeout=timeout, ssl=ssl, confirm=confirm)


def hot_path_pipes(settings: Settings, cluster: bool) -> tuple[Pipe, Pipe]:
    """The till's pipe, and the one that consumes and reverses codes: the same, or with
    QRLOOP_REDIS_DURABILITY=replicated one of its own that confirms every write with WAITAOF
    (its connections block while a WAITAOF waits; the gate's counters and checks need not)."""
    url = settings.redis_url
    assert url, "settings must name Redis"
    ssl = redis_client.Tls.of(settings).context() if redis_client.uses_tls(url) else None
    pipe = pipe_for(url, cluster, ssl=ssl)
    if settings.redis_durability == "local":
        return pipe, pipe
    confirm = Confirmation(replicas=1, timeout_ms=settings.redis_confirm_ms)
    return pipe, pipe_for(url, cluster, ssl=ssl, confirm=confirm)


def _slot(key: Arg) -> int:
    return key_slot(key if isinstance(key, bytes) else str(key).encode())


class ClusterPipe:
    """Routes each call by its key's slot; `call()` and `evalsha()` as on a RedisPipe."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        ssl: tls.SSLContext | None = None,
        confirm: Confirmation | None = None,
    ) -> None:
        self._seed = parse_address(url)
        if self._seed.host is None:
            raise ValueError("a cluster is reached over TCP: REDIS_URL must be redis(s)://")
        self._timeout = timeout
        self._ssl = ssl
        self._confirm = confirm
        self._owners: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS  # "host:port"
        self._pipes: dict[str, RedisPipe] = {}
        self._refreshing: asyncio.Task[None] | None = None

    async def call(self, *args: Arg) -> Any:
        """Send one command to the primary of its key, `args[1]` (for every command qrloop
        sends this way, the key comes right after the command's name)."""

        def send(pipe: RedisPipe, asking: bool) -> Awaitable[Any]:
            return pipe.call(*args, asking=asking)

        return await self._routed(_slot(args[1]), send)

    async def evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run `script` on the primary of its keys' one slot."""

        def send(pipe: RedisPipe, asking: bool) -> Awaitable[Any]:
            return pipe.evalsha(script, keys, args, asking=asking)

        return await self._routed(_slot(keys[0]), send)

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for pipe in list(self._pipes.values()):
            await pipe.close()

    async def _routed(self, slot: int, send: Send) -> Any:
        deadline = time.monotonic() + self._timeout
        asked: str | None = None  # the importing node an ASK named, for the next try only
        redirects = 0
        pause = _FIRST_PAUSE_SECONDS
        while True:
            node = asked or self._owners[slot] or await self._owner_after_refresh(slot)
            try:
                return await send(self._pipe(node), asked is not None)
            except ResponseError as error:
                kind, _, rest = str(error).partition(" ")
                asked = None
                if kind == "MOVED":
                    self._owners[slot] = _named(rest, node)
                    self._refresh_soon()
                elif kind == "ASK":
                    asked = _named(rest, node)
                elif kind in _RETRIED:
                    redirects = _IMMEDIATE_REDIRECTS
                    if kind == "CLUSTERDOWN":
                        self._refresh_soon()
                else:
                    raise
                redirects += 1
                failure: RedisError = error
            except (RedisConnectionError, RedisTimeoutError) as error:
                asked = None
                redirects = _IMMEDIATE_REDIRECTS + 1
                self._refresh_soon()
                failure = error
            if redirects > _IMMEDIATE_REDIRECTS:
                if time.monotonic() + pause > deadline:
                    raise failure
                await asyncio.sleep(pause)
                pause = min(2 * pause, _LONGEST_PAUSE_SECONDS)
            elif time.monotonic() > deadline:
                raise failure

    def _pipe(self, node: str) -> RedisPipe:
        pipe = self._pipes.get(node)
        if pipe is None:
            host, _, port = node.rpartition(":")
            address = dataclasses.replace(self._seed, host=host, port=int(port), db=0)
            pipe = self._pipes[node] = RedisPipe(
                address, timeout=self._timeout, ssl=self._ssl, confirm=self._confirm
            )
        return pipe

    async def _owner_after_refresh(self, slot: int) -> str:
        self._refresh_soon()
        assert self._refreshing is not None
        await asyncio.shield(self._refreshing)
        owner = self._owners[slot]
        if owner is None:
            raise RedisConnectionError(f"no cluster node serves slot {slot}")
        return owner

    def _refresh_soon(self) -> None:
        """Re-read the slot map in the background, once however many calls ask for it."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(_retrieve)

    async def _refresh(self) -> None:
        """The slot map, from the first node that answers: the seed, then every node seen."""
        seed = f"{self._seed.host}:{self._seed.port}"
        failure: RedisError = RedisConnectionError("no cluster node answered CLUSTER SLOTS")
        for node in dict.fromkeys([seed, *self._pipes, *filter(None, self._owners)]):
            try:
                ranges = await self._pipe(node).call("CLUSTER", "SLOTS", confirm=False)
            except RedisError as error:
                failure = error
                continue
            self._owners = self._slot_map(ranges, node)
            return
        raise failure

    @staticmethod
    def _slot_map(ranges: list[list[Any]], asked: str) -> list[str | None]:
        """CLUSTER SLOTS ([first, last, [host, port, id], replicas...] per range) as one
        owner per slot; a primary without a known host is on the node that was asked."""
        owners: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        asked_host = asked.rpartition(":")[0]
        for first, last, primary, *_ in ranges:
            host = primary[0].decode() if primary[0] not in (b"", b"?", None) else asked_host
            owners[first : last + 1] = [f"{host}:{primary[1]}"] * (last - first + 1)
        return owners


def _named(redirection: str, answered: str) -> str:
    """The node a MOVED or ASK names ("<slot> host:port"); a node that does not know its
    own address names only ":port", meaning the host that answered."""
    named = redirection.split()[1]
    return answered.rpartition(":")[0] + named if named.startswith(":") else named


def _retrieve(task: asyncio.Task[None]) -> None:
    """A refresh that failed is retried by the next call that needs one; no warning."""
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()
