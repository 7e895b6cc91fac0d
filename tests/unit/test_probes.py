"""The probe listener's answers, on a real socket: readiness follows the check it is given."""

from __future__ import annotations

import asyncio

import httpx

from qrloop.probes import serve_probes


async def _get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://127.0.0.1:{port}{path}", timeout=5)


async def test_readiness_is_503_while_the_check_fails_and_200_once_it_passes() -> None:
    """A process whose stores do not answer is live but not ready; it becomes ready again as
    soon as its check passes, without a restart."""
    healthy = asyncio.Event()

    async def ready() -> None:
        if not healthy.is_set():
            raise ConnectionError("Redis does not answer")

    server = await serve_probes("127.0.0.1", 0, ready)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await _get(port, "/health/live")).status_code == 200
        assert (await _get(port, "/health/ready")).status_code == 503
        healthy.set()
        assert (await _get(port, "/health/ready")).status_code == 200
    finally:
        server.close()
        await server.wait_closed()


async def test_a_request_that_never_ends_its_head_is_answered_400() -> None:
    """A client that sends a request head larger than the listener reads is refused, so a
    stray connection cannot make the listener buffer without bound."""

    async def ready() -> None:
        return None

    server = await serve_probes("127.0.0.1", 0, ready)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health/live HTTP/1.1\r\nX-Long: " + b"a" * 20000)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 ")
    finally:
        server.close()
        await server.wait_closed()
