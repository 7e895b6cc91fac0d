"""`qrloop orders watch ID`: follow an order being signed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from qrloop.cli.common import stores

if TYPE_CHECKING:
    import argparse

    from qrloop.cli.common import Commands
    from qrloop.settings import Settings

_WATCH = """\
Redraw the order's progress bar until it finishes; once done, say how many codes it took how
long to sign, from the order being placed to its last code written. Exit 0 only when the order
is done (1 when it failed or was cancelled)."""


def register(commands: Commands) -> None:
    orders = commands.add_parser("orders", help="follow orders", description="Follow orders.")
    actions = orders.add_subparsers(title="actions", required=True, metavar="ACTION")
    watch = actions.add_parser(
        "watch", help="show an order's progress until it finishes", description=_WATCH
    )
    watch.add_argument(
        "order_id",
        type=int,
        metavar="ORDER_ID",
        help="the order's id, as POST /v1/campaigns/{id}/orders answered it",
    )
    watch.set_defaults(run=cmd_watch)


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from qrloop.issuance.progress import watch

    with stores(settings) as ready:
        assert ready.database_url
        cache = ready.statement_cache
        return asyncio.run(watch(ready.database_url, args.order_id, sys.stdout, cache))
