"""`qrloop migrate`, `qrloop reconcile` and `qrloop partitions`: the stores' upkeep."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from typing import TYPE_CHECKING

from qrloop.cli.common import stores, with_pool

if TYPE_CHECKING:
    import asyncpg

    from qrloop.cli.common import Commands
    from qrloop.settings import Settings

_RECONCILE = """\
Compare which codes Redis holds used with the redemptions settled in PostgreSQL, and name the
partitions that lost their state. Exit 1 while a settled redemption is free again in Redis."""
_DETACH = """\
Detach the months before --before from the redemptions, reversals and ledger tables (each
DETACH ... CONCURRENTLY: the other months are read and written meanwhile). The detached
months stay as standalone tables to dump and drop, and are never made again. The current and
the previous month always stay, and so does a month holding uses of a campaign that can
still be redeemed (no valid_until, or one ahead): a rebuild of lost Redis state needs them."""


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
    partitions = commands.add_parser(
        "partitions",
        help="monthly partitions of redemptions and the ledger",
        description="The months the redemptions and the ledger are partitioned by.",
    )
    actions = partitions.add_subparsers(title="actions", required=True, metavar="ACTION")
    detach = actions.add_parser(
        "detach", help="detach old months whose campaigns have ended", description=_DETACH
    )
    detach.add_argument(
        "--before", required=True, type=_month, metavar="YYYY-MM", help="the first month kept"
    )
    detach.set_defaults(run=cmd_detach)


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    import asyncio

    from qrloop import db

    with stores(settings) as ready:
        assert ready.database_url and ready.redis_url
        cache = ready.statement_cache
        applied = asyncio.run(db.migrate(ready.database_url, statement_cache=cache))
        print(f"applied {len(applied)} migration(s)" if applied else "database is up to date")
        if applied and applied[0] == 1:
            # A new database: Redis can hold nothing PostgreSQL lacks, so its code state is
            # made ready here and processes started on their own serve at once. On an older
            # database, a Redis without its markers lost state: rebuilding it is the
            # operator's call (`qrloop reconcile --rehydrate`).
            from qrloop.settlement.state import epochs_of

            ready_now = asyncio.run(epochs_of(ready))
            print(f"code state ready on {len(ready_now)} partition(s)")
    return 0


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """Report disagreements; exit 1 while a settled redemption is free again in Redis."""
    import asyncio

    from qrloop.settlement.reconcile import describe, reconcile
    from qrloop.settlement.state import connected, ensure_epochs

    async def run(ready: Settings) -> bool:
        async with connected(ready, pool_size=2) as (pool, client):
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

    with stores(settings) as ready:
        return 0 if asyncio.run(run(ready)) else 1


def _month(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a month like 2025-01: {text!r}") from None


def cmd_detach(settings: Settings, args: argparse.Namespace) -> int:
    """Say which months were detached and which kept, and why; 2 for a month too recent."""
    from qrloop.settlement import partitions

    async def detach(pool: asyncpg.Pool) -> str:
        return partitions.describe(await partitions.detach(pool, args.before))

    try:
        print(with_pool(settings, detach))
    except ValueError as error:
        print(f"qrloop partitions detach: {error}", file=sys.stderr)
        return 2
    return 0
