"""Fail closed: when Redis cannot answer, or has lost its state, no code is accepted."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from support import (
    Stack,
    Stores,
    eventually,
    fetchval,
    free_port,
    reason,
    redeem,
    serving,
    start_valkey,
    till,
)


@pytest.fixture
def own_redis(stores: Stores, scratch_dir: Path) -> Iterator[tuple[Stack, Path, int]]:
    """A stack whose Redis is a Valkey of this test's own, free to be killed."""
    port = free_port()
    valkey = start_valkey(scratch_dir / "valkey", port)
    own = Stores(stores.database_url, f"redis://127.0.0.1:{port}/0")
    try:
        with serving(own, scratch_dir / "serve") as stack:
            yield stack, scratch_dir / "valkey", port
    finally:
        valkey.kill()
        valkey.wait()


def _till_with_codes(stack: Stack, count: int) -> tuple[str, list[str]]:
    merchant = stack.new_merchant()
    store_id = merchant.created("/v1/stores", {"name": "S"})["id"]
    return merchant.terminal_token(store_id), merchant.codes(merchant.campaign(), count)


def test_redis_down_means_unavailable_and_nothing_consumed(
    own_redis: tuple[Stack, Path, int],
) -> None:
    """With Redis killed, redeem and check answer 503 unavailable; once it restarts from its
    AOF, the code refused meanwhile redeems, and the one redeemed before is still used."""
    stack, folder, port = own_redis
    token, (before, during) = _till_with_codes(stack, 2)
    assert redeem(stack, token, before).status_code == 200

    os.kill(int(redis.Redis(port=port).info("server")["process_id"]), signal.SIGKILL)
    response = redeem(stack, token, during)
    assert (response.status_code, reason(response)) == (503, "unavailable")
    assert response.headers["retry-after"] == "1"
    check = till(stack, "/v1/check", token, {"code": during})
    assert (check.status_code, reason(check)) == (503, "unavailable")

    restarted = start_valkey(folder, port)
    try:
        eventually(
            lambda: till(stack, "/v1/check", token, {"code": during}).status_code == 200, within=5
        )
        assert redeem(stack, token, during).status_code == 200
        refused = redeem(stack, token, before)
        assert (refused.status_code, reason(refused)) == (409, "already_redeemed")
    finally:
        restarted.kill()
        restarted.wait()


def test_lost_state_means_unavailable(own_redis: tuple[Stack, Path, int]) -> None:
    """A Redis that comes back empty (no epoch markers) refuses every code with 503, and
    readiness says so."""
    stack, _, port = own_redis
    token, (code,) = _till_with_codes(stack, 1)
    redis.Redis(port=port).flushall()
    response = redeem(stack, token, code)
    assert (response.status_code, reason(response)) == (503, "unavailable")
    ready = httpx.get(stack.base_url + "/health/ready")
    assert (ready.status_code, reason(ready)) == (503, "unavailable")


def test_wiped_redis_refuses_until_rehydrated_then_is_correct(
    own_redis: tuple[Stack, Path, int],
) -> None:
    """After Redis is wiped the till refuses every code; `qrloop reconcile` reports the lost
    state (exit 1); `--rehydrate` rebuilds it from PostgreSQL: the settled code is refused as
    used, a fresh one redeems, and settlement carries on (consumer groups recreated)."""
    stack, _, port = own_redis
    token, (used, fresh, later) = _till_with_codes(stack, 3)
    assert redeem(stack, token, used).status_code == 200
    eventually(lambda: fetchval(stack, "SELECT count(*) FROM redemptions") == 1, within=15)

    redis.Redis(port=port).flushall()
    assert redeem(stack, token, fresh).status_code == 503
    report = stack.cli("reconcile", check=False)
    assert report.returncode == 1
    assert "state lost" in report.stdout

    rebuilt = stack.cli("reconcile", "--rehydrate", check=False)
    assert rebuilt.returncode == 0, rebuilt.stdout
    refused = redeem(stack, token, used)
    assert (refused.status_code, reason(refused)) == (409, "already_redeemed")
    assert redeem(stack, token, fresh).status_code == 200
    assert redeem(stack, token, later).status_code == 200
    eventually(lambda: fetchval(stack, "SELECT count(*) FROM redemptions") == 3, within=20)
