"""A Redis connection for the hot path: every command issued in one event-loop tick goes out
in one write, and replies are parsed by hiredis.

Pipelining concurrent redemptions this way costs one syscall per tick instead of one per
request, and lets Redis share one `appendfsync always` fsync among all the scripts that arrive
together. Replies come back in order, so a FIFO of futures is all the bookkeeping needed.

A pipe made with a `Confirmation` (QRLOOP_REDIS_DURABILITY=replicated) holds every reply until
a WAITAOF sent after the command confirms it on the primary's AOF and on enough replicas'.
One WAITAOF covers every earlier write of its connection, so a batch needs only one: while a
batch is being confirmed, the commands issued meanwhile wait, and go out together as the next
batch (a group commit that grows with the load). WAITAOF is sent once the batch's replies are
in, not in the same write: a replica that reads the writes and the primary's GETACK together
answers the GETACK before its fsync, and would not say so again for up to a second. For the
same reason a short answer is asked again, in steps, until the confirmation time is up.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl as tls
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int

# After a failed connect, calls fail at once for this long instead of piling up connects.
_RECONNECT_BACKOFF_SECONDS = 0.2
# A WAITAOF that falls short is asked again after this long (each asks replicas to ACK).
_CONFIRM_STEP_MS = 2


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


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What WAITAOF must report before a write counts: the primary's own AOF and `replicas`
    replicas' AOFs fsynced, within `timeout_ms`."""

    replicas: int
    timeout_ms: int


class NotConfirmed(RedisError):
    """WAITAOF did not see the writes on enough AOFs in time: a failover could still lose them."""


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
    tls: bool = False


def parse_address(url: str) -> Address:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    if parts.scheme == "unix":
        return Address(None, 0, parts.path, int(query.get("db", ["0"])[0]), username, password)
    if parts.scheme in ("redis", "rediss"):
        db = int(parts.path.lstrip("/") or query.get("db", ["0"])[0])
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
        return Address(host, port, None, db, username, password, parts.scheme == "rediss")
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

    def __init__(
        self,
        url: str | Address,
        *,
        timeout: float = 2.0,
        ssl: tls.SSLContext | None = None,
        confirm: Confirmation | None = None,
    ) -> None:
        self._address = url if isinstance(url, Address) else parse_address(url)
        if ssl is not None and not self._address.tls:
            raise ValueError("a TLS context needs a rediss:// URL")
        # rediss:// is never spoken in the clear: the system's CAs unless told otherwise.
        self._ssl = ssl or (tls.create_default_context() if self._address.tls else None)
        self._timeout = timeout
        self._confirm = confirm
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()  # written
        self._outgoing: list[bytes] = []  # not written yet, and their replies' futures:
        self._waiting: list[tuple[asyncio.Future[Any], float]] = []
        self._confirmation: asyncio.Future[Any] | None = None  # the next batch's WAITAOF
        self._confirmer: asyncio.Task[None] | None = None  # confirming the batch in flight
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._failed_at = 0.0
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None

    async def call(self, *args: Arg, asking: bool = False, confirm: bool = True) -> Any:
        """Send one command; raises redis ConnectionError/TimeoutError/ResponseError, and
        NotConfirmed when this pipe confirms writes and WAITAOF fell short.

        `asking`: the command goes right behind an ASKING, on this one connection, as a
        cluster node importing the key's slot requires (an ASK redirection). `confirm=False`:
        a command that writes nothing worth keeping does not wait for a WAITAOF."""
        if self._transport is None or self._transport.is_closing():
            await self._connect()
        if asking:
            self._send(_pack(("ASKING",))).add_done_callback(_ignore)
        reply = self._send(_pack(args))
        if self._confirm is None or not confirm:
            return await reply
        confirmation = self._next_confirmation()
        result = await reply
        local, replicas = await confirmation
        if local < 1 or replicas < self._confirm.replicas:
            raise NotConfirmed(f"WAITAOF saw {local} local and {replicas} replica AOFs")
        return result

    async def evalsha(
        self, script: Script, keys: Sequence[str], args: Sequence[Arg], *, asking: bool = False
    ) -> Any:
        """Run `script`, loading it first if this Redis has not seen it (or has restarted)."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args, asking=asking)
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            await self.call("SCRIPT", "LOAD", script.source, confirm=False)
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
        self._waiting.append((future, time.monotonic() + self._timeout))
        self._outgoing.append(packed)
        self._schedule_flush()
        return future

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _next_confirmation(self) -> asyncio.Future[Any]:
        """The WAITAOF answer that will confirm the commands not written yet."""
        if self._confirmation is None:
            self._confirmation = asyncio.get_running_loop().create_future()
            self._confirmation.add_done_callback(_ignore)  # every caller may have failed
        return self._confirmation

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._confirmer is not None or not self._outgoing:
            return  # the batch goes out once the one in flight is confirmed
        if self._transport is None or self._transport.is_closing():
            self._fail_pending(RedisConnectionError("connection to Redis lost"))
            return
        last_reply = self._waiting[-1][0]
        self._pending.extend(self._waiting)
        data, self._outgoing, self._waiting = b"".join(self._outgoing), [], []
        self._transport.write(data)
        if self._confirmation is not None:
            confirming = self._confirm_batch(last_reply, self._confirmation)
            self._confirmer, self._confirmation = asyncio.ensure_future(confirming), None

    async def _confirm_batch(
        self, last_reply: asyncio.Future[Any], confirmation: asyncio.Future[Any]
    ) -> None:
        """Once the batch is answered, WAITAOF until it confirms it or the time is up; the
        answer (local and replica AOFs) goes to `confirmation`."""
        assert self._confirm is not None
        try:
            await asyncio.wait([last_reply])  # its outcome is its caller's
            deadline = time.monotonic() + self._confirm.timeout_ms / 1000
            while True:
                step = min(_CONFIRM_STEP_MS, int((deadline - time.monotonic()) * 1000))
                waitaof = ("WAITAOF", 1, self._confirm.replicas, max(1, step))
                local, replicas = await self._write_now(_pack(waitaof))
                enough = local >= 1 and replicas >= self._confirm.replicas
                if enough or time.monotonic() >= deadline:
                    confirmation.set_result((local, replicas))
                    return
        except RedisError as error:
            if not confirmation.done():
                confirmation.set_exception(error)
        finally:
            if self._confirmer is asyncio.current_task():
                self._confirmer = None
                if self._outgoing:
                    self._schedule_flush()

    def _write_now(self, packed: bytes) -> asyncio.Future[Any]:
        """Write one command at once, ahead of the commands held back."""
        if self._transport is None or self._transport.is_closing():
            raise RedisConnectionError("connection to Redis lost")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((future, time.monotonic() + self._timeout))
        self._transport.write(packed)
        return future

    def _fail_pending(self, error: Exception) -> None:
        """Fail every command written and not answered, and every one not written yet."""
        waiting, self._waiting, self._outgoing = self._waiting, [], []
        self._confirmer = None  # it fails with its connection
        if self._confirmation is not None:
            waiting.append((self._confirmation, 0.0))
            self._confirmation = None
        for future, _ in [*self._pending, *waiting]:
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

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
        self._fail_pending(RedisConnectionError("connection to Redis lost"))

        def protocol() -> _Protocol:
            return _Protocol(self._pending, self._fail_pending)

        if address.path is not None:
            transport, proto = await loop.create_unix_connection(protocol, address.path)
        else:
            assert address.host is not None
            transport, proto = await loop.create_connection(
                protocol, address.host, address.port, ssl=self._ssl
            )
        self._transport, self._protocol = transport, proto
        try:
            if address.password is not None:
                credentials = [address.username] if address.username else []
                await self._send(_pack(("AUTH", *credentials, address.password)))
            if address.db:
                await self._send(_pack(("SELECT", address.db)))
        except ResponseError:
            # Refused credentials: no command may go out on a connection that is not ours.
            transport.abort()
            raise
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
