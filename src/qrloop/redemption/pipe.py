"""A Redis connection for the hot path: every command issued in one event-loop tick goes out
in one write, and replies are parsed by hiredis.

Pipelining concurrent redemptions this way costs one syscall per tick instead of one per
request, and lets Redis share one `appendfsync always` fsync among all the scripts that arrive
together. Replies come back in order, so a FIFO of futures is all the bookkeeping needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int

# After a failed connect, calls fail at once for this long instead of piling up connects.
_RECONNECT_BACKOFF_SECONDS = 0.2


def _ignore(future: asyncio.Future[Any]) -> None:
    """Retrieve a reply nobody waits for (ASKING's OK), so asyncio does not warn of it."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script addressed by its SHA-1, sent whole only when Redis has forgotten it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324


def _pack(args: tuple[Arg, ...]) -> bytes:
    """RESP-encode one command (hiredis's stub types it as a 1-tuple; it takes any length)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


class Pipe(Protocol):
    """What the hot path needs of Redis: a single server's `RedisPipe`, or a `ClusterPipe`
    (redemption/cluster.py) that routes each call to the primary serving its key."""

    async def call(self, *args: Arg) -> Any:
        """Send one command; `args[1]` is its key (a cluster routes by it)."""

    async def evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run `script` on `keys`, all in one hash slot."""

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Address:
    host: str | None
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None


def parse_address(url: str) -> Address:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    if parts.scheme == "unix":
        return Address(None, 0, parts.path, int(query.get("db", ["0"])[0]), username, password)
    if parts.scheme == "redis":
        db = int(parts.path.lstrip("/") or query.get("db", ["0"])[0])
        return Address(
            parts.hostname or "127.0.0.1", parts.port or 6379, None, db, username, password
        )
    raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} for the hot path")


class _Protocol(asyncio.Protocol):
    def __init__(
        self,
        pending: deque[tuple[asyncio.Future[Any], float]],
        on_lost: Callable[[Exception], None],
    ) -> None:
        self._pending = pending
        self._on_lost = on_lost
        self._reader = hiredis.Reader(replyError=ResponseError)
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future, _ = self._pending.popleft()
            if future.done():
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(RedisConnectionError("connection to Redis lost"))
        if not self.closed.done():
            self.closed.set_result(None)


class RedisPipe:
    """One auto-pipelining connection; `call()` is safe from any number of concurrent tasks."""

    def __init__(self, url: str | Address, *, timeout: float = 2.0) -> None:
        self._address = url if isinstance(url, Address) else parse_address(url)
        self._timeout = timeout
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._failed_at = 0.0
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None

    async def call(self, *args: Arg, asking: bool = False) -> Any:
        """Send one command; raises redis ConnectionError/TimeoutError/ResponseError.

        `asking`: the command goes right behind an ASKING, on this one connection, as a
        cluster node importing the key's slot requires (an ASK redirection)."""
        if self._transport is None or self._transport.is_closing():
            await self._connect()
        if asking:
            self._send(_pack(("ASKING",))).add_done_callback(_ignore)
        return await self._send(_pack(args))

    async def evalsha(
        self, script: Script, keys: Sequence[str], args: Sequence[Arg], *, asking: bool = False
    ) -> Any:
        """Run `script`, loading it first if this Redis has not seen it (or has restarted)."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args, asking=asking)
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            await self.call("SCRIPT", "LOAD", script.source)
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args, asking=asking)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._transport is not None:
            self._transport.close()
            assert self._protocol is not None
            await self._protocol.closed

    def _send(self, packed: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((future, time.monotonic() + self._timeout))
        self._outgoing.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        data, self._outgoing = b"".join(self._outgoing), []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
        else:
            self._fail_pending(RedisConnectionError("connection to Redis lost"))

    def _fail_pending(self, error: Exception) -> None:
        while self._pending:
            future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(error)

    async def _connect(self) -> None:
        if time.monotonic() - self._failed_at < _RECONNECT_BACKOFF_SECONDS:
            raise RedisConnectionError("Redis was unreachable a moment ago")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is not None and not self._transport.is_closing():
                return
            try:
                await asyncio.wait_for(self._open(), self._timeout)
            except (OSError, TimeoutError) as error:
                self._failed_at = time.monotonic()
                raise RedisConnectionError(f"cannot reach Redis: {error}") from None

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        address = self._address
        self._outgoing.clear()

        def protocol() -> _Protocol:
            return _Protocol(self._pending, self._fail_pending)

        if address.path is not None:
            transport, proto = await loop.create_unix_connection(protocol, address.path)
        else:
            assert address.host is not None
            transport, proto = await loop.create_connection(protocol, address.host, address.port)
        self._transport, self._protocol = transport, proto
        if address.password is not None:
            credentials = [address.username] if address.username else []
            await self._send(_pack(("AUTH", *credentials, address.password)))
        if address.db:
            await self._send(_pack(("SELECT", address.db)))
        self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._timeout / 4, self._check_deadlines)

    def _check_deadlines(self) -> None:
        """A reply overdue past the timeout means a stuck server: drop the connection."""
        if self._pending and self._pending[0][1] < time.monotonic():
            self._fail_pending(RedisTimeoutError("Redis did not answer in time"))
            if self._transport is not None:
                self._transport.abort()
        if self._transport is not None and not self._transport.is_closing():
            self._arm_watchdog()
