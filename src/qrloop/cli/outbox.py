"""`qrloop outbox tail`: what the development sender 'sent' consumers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qrloop.cli.common import stores

if TYPE_CHECKING:
    import argparse

    from qrloop.cli.common import Commands
    from qrloop.settings import Settings

_TAIL = """\
Print the latest messages the development sender 'sent' (recipient, then text), so one-time
codes can be read without a mail server or SMS gateway. Waits up to 10 s first for messages
queued a moment ago to leave the outbox."""


def register(commands: Commands) -> None:
    outbox = commands.add_parser(
        "outbox",
        help="read the messages sent to consumers",
        description="Messages to consumers: one-time codes and links.",
    )
    actions = outbox.add_subparsers(title="actions", required=True, metavar="ACTION")
    tail = actions.add_parser(
        "tail", help="print what the development sender 'sent'", description=_TAIL
    )
    tail.add_argument("-n", type=int, default=10, help="how many of the latest (default 10)")
    tail.add_argument("--follow", action="store_true", help="keep printing new ones")
    tail.set_defaults(run=cmd_tail)


def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from qrloop import db
    from qrloop.messages import outbox
    from qrloop.messages.dev import DevSender

    async def run(database_url: str) -> None:
        pool = await db.create_pool(database_url, 1, statement_cache=settings.statement_cache)
        try:
            await outbox.wait_for_queued(pool, within=10.0)
            last, count = 0, args.n
            while True:
                for row in await outbox.latest(pool, DevSender.__name__, count, after=last):
                    print(f"{row['recipient']}  {row['body']}", flush=True)
                    last = row["id"]
                if not args.follow:
                    return
                count = 1000
                await asyncio.sleep(0.5)
        finally:
            await pool.close()

    with stores(settings) as ready:
        assert ready.database_url
        asyncio.run(run(ready.database_url))
    return 0
