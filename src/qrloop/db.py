"""PostgreSQL connections and numbered SQL migrations."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources

import asyncpg

# asyncpg's default size of its prepared-statement cache.
_CACHE_SIZE = 100
# Any fixed number works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 0x71726C6F6F70
_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

Pool = asyncpg.Pool
Connection = asyncpg.Connection

# PostgreSQL cannot answer right now (down, restarting, the connection lost mid-transaction,
# which asyncpg reports as an InterfaceError): callers retry, or answer 503, never 500.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
# Any failure of a statement, the server's refusals included: worth retrying off the hot path.
DB_ERRORS: tuple[type[Exception], ...] = (asyncpg.PostgresError, *UNAVAILABLE_ERRORS)


async def create_pool(
    database_url: str, size: int, *, statement_cache: bool = True
) -> asyncpg.Pool:
    """A pool whose connections fail fast instead of hanging a request. Without
    `statement_cache` (behind a transaction pooler) no statement is kept prepared: each is
    parsed afresh and unnamed, in the same message batch as its Bind and Execute, so it never
    meets a server connection that did not parse it (asyncpg learns its types first, in a round
    trip of its own)."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=size,
        command_timeout=30,
        timeout=10,
        statement_cache_size=_CACHE_SIZE if statement_cache else 0,
    )
    assert pool is not None
    return pool


async def connect(database_url: str, *, statement_cache: bool = True) -> asyncpg.Connection:
    """One connection, as the pool's are."""
    return await asyncpg.connect(
        database_url, timeout=10, statement_cache_size=_CACHE_SIZE if statement_cache else 0
    )


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("qrloop.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(
    database_url: str,
    progress: Callable[[str], None] = print,
    *,
    statement_cache: bool = True,
    below: int | None = None,
) -> list[int]:
    """Apply pending migrations, each in its own transaction; return the versions applied.
    With `below`, only those numbered below it (an older schema, to test a migration over).

    Each transaction takes the migration lock and applies the next pending migration, so two
    processes migrating at once apply each migration once. The lock is the transaction's, not
    the session's: behind a transaction pooler a session lock would stay on whichever server
    connection took it, held for ever."""
    connection = await connect(database_url, statement_cache=statement_cache)
    applied_now: list[int] = []
    try:
        while True:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                applied = {
                    row["version"]
                    for row in await connection.fetch("SELECT version FROM schema_migrations")
                }
                pending = [
                    m
                    for m in migrations()
                    if m[0] not in applied and (below is None or m[0] < below)
                ]
                if not pending:
                    return applied_now
                version, name, sql = pending[0]
                total = len(applied_now) + len(pending)
                progress(f"migration {len(applied_now) + 1}/{total}: {version:03d}_{name}")
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied_now.append(version)
    finally:
        await connection.close()
