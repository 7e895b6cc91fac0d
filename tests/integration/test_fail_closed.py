"""Fail closed: when Redis cannot answer, or has lost its state, no code is accepted."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import redis

from support import Stack, eventually, reason, redeem, start_valkey, till


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
