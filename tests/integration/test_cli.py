"""The `qrloop` command as a person meets it: its help, its version, the tables it prints."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from qrloop.cli import parser

ROOT = Path(__file__).parents[2]
# The console script the wheel installs, beside this interpreter.
QRLOOP = str(Path(sys.executable).parent / "qrloop")
COMMANDS = {
    "serve", "api", "worker", "signer", "migrate", "reconcile", "partitions", "orders",
    "merchants", "keys", "outbox",
}  # fmt: skip


def qrloop(*args: str, env: dict[str, str] | None = None) -> str:
    """What `qrloop ARGS` prints on standard output; it must exit 0."""
    result = subprocess.run(
        [QRLOOP, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _subcommands(command: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {
        name: sub
        for action in command._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }


def _every_command(
    command: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Each command and command group under `command`, with the words that name it."""
    for name, sub in _subcommands(command).items():
        yield (*path, name), sub
        yield from _every_command(sub, (*path, name))


def _described(help_text: str, names: list[str]) -> set[str]:
    """Those of `names` that the help lists with a description on the same line."""
    return {
        name for name in names if re.search(rf"^ +{re.escape(name)}  +\S", help_text, re.MULTILINE)
    }


def test_help_lists_every_command() -> None:
    """`qrloop --help` names every command with what it does (api, signer, orders and
    reconcile were once left out), and names no command that does not run."""
    shown = qrloop("--help")
    accepted = list(_subcommands(parser()))
    assert set(accepted) == COMMANDS
    assert _described(shown, accepted) == COMMANDS
    listed = re.findall(r"^    (\S+)  +\S", shown.split("commands:", 1)[1], re.MULTILINE)
    assert set(listed) == COMMANDS


@pytest.mark.parametrize(
    "path", [" ".join(path) for path, _ in _every_command(parser())], ids=lambda path: path
)
def test_each_command_explains_its_arguments(path: str) -> None:
    """`qrloop … --help` describes every positional argument and every action of a command
    group, each on its own line, so nobody has to guess what `qrloop keys revoke 3` takes."""
    words = path.split()
    command = dict(_every_command(parser()))[tuple(words)]
    shown = qrloop(*words, "--help")
    positionals = [
        action.metavar or action.dest
        for action in command._actions
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction)
    ]
    assert all(isinstance(name, str) for name in positionals)
    assert _described(shown, positionals) == set(positionals), shown
    actions = list(_subcommands(command))
    assert _described(shown, actions) == set(actions), shown


def test_version_is_the_package_version() -> None:
    """`qrloop --version` prints the installed package's version and exits 0."""
    assert qrloop("--version") == f"qrloop {version('qrloop')}\n"


def test_keys_list_lines_up_its_columns(tmp_path: Path) -> None:
    """`qrloop keys list` starts every cell under its column's heading, whatever the longest
    value (`consumer` is longer than `purpose`, `verify-only` than `status`)."""
    env = {**os.environ, "QRLOOP_KEYS_DIR": str(tmp_path)}
    env.pop("QRLOOP_KEYRING", None)
    for purpose, algorithm in (
        ("code", "hmac-sha256"),
        ("token", "ed25519"),
        ("consumer", "hmac-sha256"),
        ("consumer", "hmac-sha256"),
    ):
        qrloop("keys", "rotate", "--purpose", purpose, "--algorithm", algorithm, env=env)
    header, *rows = qrloop("keys", "list", env=env).splitlines()
    columns = [found.start() for found in re.finditer(r"\S+", header)]
    assert header.split() == ["id", "purpose", "algorithm", "status", "created"]
    assert [row.split()[:4] for row in rows] == [
        ["1", "code", "hmac-sha256", "active"],
        ["2", "token", "ed25519", "active"],
        ["3", "consumer", "hmac-sha256", "verify-only"],
        ["4", "consumer", "hmac-sha256", "active"],
    ]
    for row in rows:
        assert [found.start() for found in re.finditer(r"\S+", row)] == columns, (header, row)


def test_keys_init_makes_what_a_ring_needs_once(tmp_path: Path) -> None:
    """`qrloop keys init` adds one active key of each kind qrloop runs on, and nothing to a
    ring that has them; `keys generate --purpose token` makes the Ed25519 key tokens need."""
    env = {**os.environ, "QRLOOP_KEYS_DIR": str(tmp_path)}
    env.pop("QRLOOP_KEYRING", None)
    qrloop("keys", "generate", "--purpose", "token", env=env)
    qrloop("keys", "init", env=env)
    assert "has every key" in qrloop("keys", "init", env=env)
    _, *rows = qrloop("keys", "list", env=env).splitlines()
    assert [row.split()[1:4] for row in rows] == [
        ["token", "ed25519", "active"],
        ["code", "hmac-sha256", "active"],
        ["code", "ed25519", "active"],
        ["consumer", "hmac-sha256", "active"],
        ["webhook", "hmac-sha256", "active"],
    ]


def _command_lines(text: str) -> Iterator[list[str]]:
    """The concrete `qrloop COMMAND …` lines in `text`, as argument lists: shell variables
    stand for 1, and mentions with placeholders (ID, [--option], a|b, …, ...) are left out."""
    # A lookahead, so that the second command of `qrloop a && qrloop b` is found too.
    for found in re.finditer(rf"\bqrloop (?=((?:{'|'.join(COMMANDS)})\b.*))", text):
        lexer = shlex.shlex(found[1].split("`")[0], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = []
        for word in lexer:
            if word and set(word) <= set("();<>|&"):
                break
            words.append(re.sub(r"^\$\w+$", "1", word))
        if not any(re.fullmatch(r"[A-Z_]+|\.\.\.|.*[\[|…{].*", word) for word in words):
            yield words


def _only_names(words: list[str]) -> bool:
    """Whether `words` are only the names of a command (or group), with no arguments."""
    command: argparse.ArgumentParser | None = parser()
    for word in words:
        assert command is not None
        command = _subcommands(command).get(word)
        if command is None:
            return False
    return True


def test_every_documented_command_line_is_one_qrloop_takes() -> None:
    """Each concrete `qrloop …` command line in the READMEs and deploy/ parses (the deploy
    guide once said `keys generate --purpose terminal`, a purpose that does not exist)."""
    documents = [ROOT / "README.md", ROOT / "keys" / "README.md"]
    documents += [path for path in (ROOT / "deploy").rglob("*") if path.is_file()]
    checked = 0
    for document in documents:
        for words in _command_lines(document.read_text(errors="replace")):
            try:
                parser().parse_args(words)
            except SystemExit:
                # Only a mention in prose, like `qrloop merchants quota`, may lack arguments.
                if not _only_names(words):
                    pytest.fail(f"{document.relative_to(ROOT)}: qrloop {shlex.join(words)}")
            checked += 1
    assert checked >= 30
