"""kill -9 of an embedded server under till load: `serve` restarts it from its own files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import (
    Load,
    Stack,
    Stores,
    eventually,
    fetchval,
    free_port,
    settled_exactly_once,
    tills,
    wait_until_ready,
)

CODES = 2_000
SETTLED = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"
# How long after the killed server is back a till may still be refused: its API connections
# notice the new server on their next use.
RECONNECT_SECONDS = 5


@pytest.fixture
def embedded_serve(scratch_dir: Path) -> Iterator[Stack]:
    """`qrloop serve` on the embedded default in a folder of its own: it owns (and supervises)
    its PostgreSQL and Valkey, which the test may kill."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env = {**environ, "QRLOOP_PORT": str(port), "QRLOOP_LOG_LEVEL": "warning"}
    base_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "qrloop", "serve"], cwd=scratch_dir, env=env)
    try:
        wait_until_ready(base_url, process, timeout=120)
        state = _state(scratch_dir)
        yield Stack(base_url, env, Stores(state["database_url"], state["redis_url"]), scratch_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def _state(workdir: Path) -> dict[str, str | int]:
    state: dict[str, str | int] = json.loads((workdir / ".qrloop" / "embedded.json").read_text())
    return state


def _pid(stack: Stack, server: str) -> int:
    return int(_state(stack.workdir)[f"{server}_pid"])


@pytest.mark.parametrize("server", ["valkey", "postgres"])
def test_an_embedded_server_killed_under_load_is_restarted_and_loses_nothing(
    embedded_serve: Stack, server: str
) -> None:
    """3 tills redeem 2,000 codes at 16 concurrent requests (retrying a 503 with the same nonce
    after a second, as a till does); the embedded Valkey or PostgreSQL is kill -9'd mid-way.
    `serve` starts it again from its own files (Valkey's AOF, PostgreSQL's WAL) within a few
    seconds, under a new pid at the same socket. Tills get only 200 or 503, and 503 only while
    the server is down (and a few seconds after, while connections notice it is back); every
    code ends with exactly one 200; afterwards a fourth till gets 409 already_redeemed for every
    code (none answered 200 before the kill is accepted again), and PostgreSQL holds exactly
    the redemptions answered 200, each booked once in the ledger."""
    stack = embedded_serve
    merchant = stack.new_merchant()
    tokens = tills(merchant, 4)
    campaign = merchant.campaign(platform_fee=25)
    codes = merchant.codes(campaign, CODES)
    killed_pid = _pid(stack, server)

    load = Load(stack.base_url, tokens[:3], codes, concurrency=16, retry=frozenset({503}))
    with load:
        eventually(lambda: load.count(200) >= CODES // 4, within=60)
        os.kill(killed_pid, signal.SIGKILL)
        killed = time.monotonic()
        eventually(lambda: _pid(stack, server) != killed_pid, within=60)
        back = time.monotonic()
        attempts = load.finish(within=180)
    print(f"the {server} server was back {back - killed:.1f} s after the kill")

    assert {a.status for a in attempts} <= {200, 503}
    late = [a for a in attempts if a.status == 503 and a.sent > back + RECONNECT_SECONDS]
    assert not late, f"{len(late)} refusals long after {server} was back"
    redeemed = Counter(a.code for a in attempts if a.status == 200)
    assert redeemed == Counter(codes), "a code was not redeemed exactly once"

    with Load(stack.base_url, tokens[3:], codes, concurrency=16) as again:
        rescans = again.finish(within=120)
    assert Counter((a.status, a.reason) for a in rescans) == {(409, "already_redeemed"): CODES}

    ids = {a.redemption_id for a in attempts if a.redemption_id}
    assert len(ids) == CODES
    eventually(lambda: fetchval(stack, SETTLED, campaign) >= CODES, within=60)
    settled_exactly_once(stack, campaign, ids)
