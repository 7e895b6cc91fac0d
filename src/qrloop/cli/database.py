"""`qrloop migrate` and `qrloop reconcile`: the stores' upkeep."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qrloop.cli.common import stores

if TYPE_CHECKING:
    import argparse

    from qrloop.cli.common import Commands
    from qrloop.settings import Settings

_RECONCILE = """\
Compare which codes Redis holds used with the redemptions settled in PostgreSQL, and name the
partitions that lost their state. Exit 1 while a settled redemption is free again in Redis."""


def register(commands: Commands) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="apply database migrations",
        description="Apply the database migrations not applied yet (serve does it too).",
    )
    migrate.set_defaults(run=cmd_migrate)
    reconcile = commands.add_parser(
        "reconcile", help="compare Redis state with PostgreSQL", description=_RECONCILE
    )
    reconcile.add_argument(
        "--rehydrate",
        action="store_true",
        help="first rebuild, from PostgreSQL, the partitions that lost their state",
    )
    reconcile.set_defaults(run=cmd_reconcile)


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    import asyncio

    from qrloop import db

    with stores(settings) as ready:
        assert ready.database_url
        applied = asyncio.run(db.migrate(ready.database_url))
    print(f"applied {len(applied)} migration(s)" if applied else "database is up to date")
    return 0


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """Report disagreements; exit 1 while a settled redemption is free again in Redis."""
    import asyncio

    import redis.asyncio as redis

    from qrloop import db
    from qrloop.settlement.reconcile import describe, reconcile
    from qrloop.settlement.state import ensure_epochs

    async def run(database_url: str, redis_url: str) -> bool:
        pool = await db.create_pool(database_url, 2)
        client = redis.Redis.from_url(redis_url)
        try:
            if args.rehydrate:
                rebuilt = await ensure_epochs(pool, client, settings.partitions)
                print(
                    f"rebuilt partitions {rebuilt} from PostgreSQL"
                    if rebuilt
                    else "nothing to rebuild"
                )
            report = await reconcile(pool, client, settings.partitions)
            print(describe(report))
            return report.consistent
        finally:
            await client.aclose()
            await pool.close()

    with stores(settings) as ready:
        assert ready.database_url
        assert ready.redis_url
        return 0 if asyncio.run(run(ready.database_url, ready.redis_url)) else 1
