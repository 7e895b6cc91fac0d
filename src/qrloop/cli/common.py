"""What several commands share: the stores to work on, a pool on them, and tables to print.

Modules of `qrloop.cli` import only what `qrloop --help` needs at their top; the stores, the
database and the settings are imported by the command that runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import argparse

    import asyncpg

    from qrloop import embedded
    from qrloop.settings import Settings

    # What each command group adds its commands to.
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

T = TypeVar("T")


@contextmanager
def stores(settings: Settings) -> Iterator[Settings]:
    """Settings that name both stores: the environment's, or the embedded default's."""
    from qrloop import embedded

    if settings.database_url:  # settings.load() makes sure REDIS_URL is set with it
        yield settings
        return
    with embedded.running(settings.data_dir) as urls:
        yield on(settings, urls)


def on(settings: Settings, urls: embedded.EmbeddedUrls) -> Settings:
    """`settings` pointed at the embedded servers."""
    import msgspec

    return msgspec.structs.replace(
        settings, database_url=urls.database_url, redis_url=urls.redis_url
    )


def with_pool(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run `work` on a one-connection pool to the (migrated) database of `settings`."""
    import asyncio

    from qrloop import db

    async def run(database_url: str) -> T:
        cache = settings.statement_cache
        await db.migrate(database_url, progress=lambda _: None, statement_cache=cache)
        pool = await db.create_pool(database_url, 1, statement_cache=cache)
        try:
            return await work(pool)
        finally:
            await pool.close()

    with stores(settings) as ready:
        assert ready.database_url
        return asyncio.run(run(ready.database_url))


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """`rows` (the first one the header) as lines whose columns line up, two spaces apart."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def moment(when: datetime | None) -> str:
    """A timestamp to the second, or `-` for none."""
    return when.isoformat(timespec="seconds") if when else "-"
