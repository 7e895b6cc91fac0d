"""Real stores and a real server process for the tests.

With DATABASE_URL and REDIS_URL set, the tests use those servers (a fresh database on that
PostgreSQL, a flushed Redis); otherwise they start the embedded PostgreSQL and Valkey.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis

from qrloop.embedded import EmbeddedServers


@dataclass(frozen=True)
class Stores:
    database_url: str
    redis_url: str


def _fresh_database(admin_url: str) -> tuple[str, str]:
    """Create an empty database on the configured server; return (its url, its name)."""
    name = f"qrloop_test_{os.getpid()}_{secrets.token_hex(4)}"

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}")), name


def _drop_database(admin_url: str, name: str) -> None:
    async def drop() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    """PostgreSQL and Redis for this test session: configured ones, or embedded ones."""
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if database_url and redis_url:
        url, name = _fresh_database(database_url)
        redis.Redis.from_url(redis_url).flushdb()
        try:
            yield Stores(url, redis_url)
        finally:
            _drop_database(database_url, name)
        return
    with EmbeddedServers(tmp_path_factory.mktemp("embedded")) as urls:
        yield Stores(urls.database_url, urls.redis_url)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Stack:
    """A running `qrloop serve` (API and worker processes) on the session's stores."""

    base_url: str
    env: dict[str, str]
    stores: Stores
    workdir: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qrloop", *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def new_merchant(self, name: str = "Cone & Co") -> Merchant:
        lines = dict(
            line.split("=", 1) for line in self.cli("merchants", "create", name).stdout.split()
        )
        return Merchant(self, int(lines["merchant_id"]), lines["api_key"])


@dataclass
class Merchant:
    stack: Stack
    id: int
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return httpx.post(
            self.stack.base_url + path, json=body, headers={**self.headers, **headers}, timeout=30
        )

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(
            self.stack.base_url + path, params=params, headers=self.headers, timeout=60
        )

    def created(self, path: str, body: Any) -> dict[str, Any]:
        response = self.post(path, body)
        assert response.status_code in (200, 201, 202), response.text
        result: dict[str, Any] = response.json()
        return result

    def terminal_token(self, store_id: int, name: str = "till") -> str:
        terminal = self.created("/v1/terminals", {"store_id": store_id, "name": name})
        response = httpx.post(
            self.stack.base_url + "/v1/terminal/token",
            json={"terminal_id": terminal["id"], "secret": terminal["secret"]},
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def campaign(self, **fields: Any) -> int:
        body = {"name": "Free cone", "face_value": 500, "currency": "CNY", **fields}
        campaign_id: int = self.created("/v1/campaigns", body)["id"]
        return campaign_id

    def codes(self, campaign_id: int, quantity: int) -> list[str]:
        order = self.created(f"/v1/campaigns/{campaign_id}/orders", {"quantity": quantity})
        export = self.get(f"/v1/orders/{order['id']}/codes", format="csv")
        assert export.status_code == 200, export.text
        return [line.split(",")[0] for line in export.text.splitlines()[1:]]


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"qrloop serve exited with {process.returncode}")
        try:
            if httpx.get(base_url + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("qrloop serve did not become ready")


@pytest.fixture(scope="session")
def stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`qrloop serve` as a real process tree, stopped with SIGTERM at the end."""
    workdir = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": stores.database_url,
        "REDIS_URL": stores.redis_url,
        "QRLOOP_PORT": str(port),
        "QRLOOP_KEYS_DIR": str(workdir / "keys"),
        "QRLOOP_DATA_DIR": str(workdir / ".qrloop"),
        "QRLOOP_LOG_LEVEL": "warning",
    }
    base_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "qrloop", "serve"], env=env, cwd=workdir)
    try:
        wait_until_ready(base_url, process)
        yield Stack(base_url, env, stores, workdir)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
