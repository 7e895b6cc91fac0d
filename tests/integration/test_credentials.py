"""Credentials have a lifecycle: several labelled API keys per merchant, revoked on every API
process at once; terminal secrets rotate and end the tokens exchanged for the old one; a till's
retry after a reversal never consumes the code again."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support import Stack, Stores, reason, redeem, serving, till


class Till:
    """A merchant's terminal, its current secret, and a shop with codes to scan."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.merchant = stack.new_merchant("Rotating")
        self.store_id = self.merchant.created("/v1/stores", {"name": "Main"})["id"]
        terminal = self.merchant.created("/v1/terminals", {"store_id": self.store_id, "name": "t"})
        self.terminal_id, self.secret = terminal["id"], terminal["secret"]
        self._codes = iter(self.merchant.codes(self.merchant.campaign(), 10))

    def code(self) -> str:
        return next(self._codes)

    def exchange(self, secret: str) -> httpx.Response:
        return httpx.post(
            self.stack.base_url + "/v1/terminal/token",
            json={"terminal_id": self.terminal_id, "secret": secret},
        )

    def token(self, secret: str) -> str:
        response = self.exchange(secret)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def rotate(self) -> str:
        response = self.merchant.post(f"/v1/terminals/{self.terminal_id}/rotate-secret", {})
        assert response.status_code == 200, response.text
        assert response.json()["id"] == self.terminal_id
        secret: str = response.json()["secret"]
        return secret


# ---- a till's retry after a reversal, on the fast path and on the framework route ----


@pytest.fixture(scope="module")
def framework_stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serving(stores, tmp_path_factory.mktemp("framework"), QRLOOP_FAST_PATH="false") as running:
        yield running


@pytest.fixture(params=["fast path", "framework route"])
def either_stack(request: pytest.FixtureRequest, stack: Stack) -> Stack:
    if request.param == "fast path":
        return stack
    framework: Stack = request.getfixturevalue("framework_stack")
    return framework


def test_retry_after_reversal_does_not_consume_again(either_stack: Stack) -> None:
    """Double spend by replay: a till that retries a scan (same terminal and nonce) after its
    redemption was reversed gets that redemption back marked `reversed`, and the code is not
    consumed a second time: it stays free for exactly one new scan."""
    stack = either_stack
    shop = Till(stack)
    token = shop.token(shop.secret)
    code = shop.code()
    first = redeem(stack, token, code, nonce="scan-42")
    assert first.status_code == 200, first.text
    assert first.json()["reversed"] is False
    redemption_id = first.json()["redemption_id"]
    assert till(stack, f"/v1/redemptions/{redemption_id}/reverse", token, {}).status_code == 200

    for _ in range(2):
        retry = redeem(stack, token, code, nonce="scan-42")
        assert retry.status_code == 200, retry.text
        assert retry.json() == {
            **first.json(),
            "status": "reversed",
            "reversed": True,
            "redemption_id": redemption_id,
        }
    assert till(stack, "/v1/check", token, {"code": code}).json()["status"] == "valid"

    again = redeem(stack, token, code, nonce="scan-43")
    assert (again.status_code, again.json()["status"]) == (200, "redeemed")
    assert again.json()["redemption_id"] == redemption_id.rsplit("-", 1)[0] + "-2"
    late = redeem(stack, token, code, nonce="scan-42")
    assert (late.status_code, reason(late)) == (409, "already_redeemed")
