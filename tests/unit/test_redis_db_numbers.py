"""The Redis db numbers test stacks get on a shared server (DATABASE_URL/REDIS_URL runs):
never one that another stack holds, in this process or another (a pytest-xdist worker)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

import support

HOLDER = """
import sys
sys.path.insert(0, sys.argv[1])
import support
with support._own_redis_db(sys.argv[2]) as number:
    print(number, flush=True)
    sys.stdin.read()  # hold it until the test closes our stdin
"""


def _server() -> str:
    """A server URL no other test uses (only its address matters: nothing connects)."""
    return f"redis://qrloop-{secrets.token_hex(4)}.invalid:6379/0"


def test_a_number_another_process_holds_is_not_handed_out() -> None:
    """While another process holds a number on a server, this one gets a different one; once
    that process ends (its lock dies with it), its number is free again."""
    server = _server()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(Path(support.__file__).parent), server],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        held = int(holder.stdout.readline())
        with support._own_redis_db(server) as mine:
            assert mine != held
    finally:
        holder.communicate(timeout=30)
    with support._own_redis_db(server) as again:
        assert again == held


def test_numbers_are_per_server_and_run_out_after_fifteen() -> None:
    """Stacks in one process get 1-15 on a server, each once; a sixteenth is refused, not
    given a shared number; another server's numbers are its own."""
    server, other = _server(), _server()
    with ExitStack() as held:
        numbers = [held.enter_context(support._own_redis_db(server)) for _ in range(15)]
        assert sorted(numbers) == list(range(1, 16))
        with pytest.raises(RuntimeError, match="held by a running stack"):
            held.enter_context(support._own_redis_db(server))
        with support._own_redis_db(other) as number:
            assert number == 1
