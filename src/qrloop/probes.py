"""Health and metrics for the processes that serve no API (settlement worker, order signer).

With QRLOOP_PROBE_PORT set, such a process answers `GET /health/live`, `GET /health/ready`
and `GET /metrics` on that port, so an orchestrator can probe it and a host that runs no API
process can still be scraped. The listener is deliberately tiny: one request per connection,
no body, a handful of fixed paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable

from qrloop import metrics
from qrloop.bearer import credential_of
from qrloop.settings import Settings

log = logging.getLogger(__name__)

Ready = Callable[[], Awaitable[None]]
_MAX_HEAD_BYTES = 8192
_READ_SECONDS = 5


async def serve_probes(
    host: str, port: int, ready: Ready, metrics_token: str | None = None
) -> asyncio.Server:
    """Listen on (host, port); `ready` raises when the process cannot do its work now."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_SECONDS)
            status, content_type, body = await _respond(head, ready, metrics_token)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, content_type, body = "400 Bad Request", "text/plain", b"bad request\n"
        except ConnectionError:
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, host, port, limit=_MAX_HEAD_BYTES)
    log.info("probes listening on %s:%d", host, port)
    return server


async def _respond(head: bytes, ready: Ready, metrics_token: str | None) -> tuple[str, str, bytes]:
    request_line, _, headers = head.decode("latin-1").partition("\r\n")
    method, _, rest = request_line.partition(" ")
    path = rest.partition(" ")[0].partition("?")[0]
    if method != "GET":
        return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
    if path == "/health/live":
        return "200 OK", "application/json", b'{"status":"ok"}'
    if path == "/health/ready":
        try:
            await ready()
        except Exception as error:  # whatever stops the work makes the process unready
            log.warning("not ready: %s", error)
            return "503 Service Unavailable", "application/json", b'{"status":"unavailable"}'
        return "200 OK", "application/json", b'{"status":"ready"}'
    if path == "/metrics":
        if metrics_token and not _bearer_is(headers, metrics_token):
            return "401 Unauthorized", "text/plain", b"unauthorized\n"
        return "200 OK", metrics.CONTENT_TYPE, metrics.render_processes()
    return "404 Not Found", "text/plain", b"not found\n"


def _bearer_is(headers: str, token: str) -> bool:
    for line in headers.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "authorization":
            given = credential_of(value.strip())
            return given is not None and hmac.compare_digest(given.encode(), token.encode())
    return False


async def start_probes(settings: Settings, ready: Ready) -> asyncio.Server | None:
    """The probe listener QRLOOP_PROBE_PORT asks for, on QRLOOP_HOST; None when unset."""
    if settings.probe_port is None:
        return None
    return await serve_probes(settings.host, settings.probe_port, ready, settings.metrics_token)
