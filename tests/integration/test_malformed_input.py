"""Malformed input is a 4xx problem everywhere: NUL characters, JSON nested too deep, and
bodies over the limit, on every route that reads text."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from support import Merchant, Stack, reason, till


@pytest.fixture(scope="module")
def merchant(stack: Stack) -> Merchant:
    return stack.new_merchant()


@pytest.fixture(scope="module")
def till_token(merchant: Merchant) -> str:
    store_id = merchant.created("/v1/stores", {"name": "Main"})["id"]
    return merchant.terminal_token(store_id)


def _raw_post(stack: Stack, path: str, body: bytes, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return httpx.post(stack.base_url + path, content=body, headers=headers, timeout=30)


def _nested(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("path", ["/v1/stores", "/v1/campaigns", "/v1/codes/void"])
def test_deeply_nested_json_is_400(stack: Stack, merchant: Merchant, path: str) -> None:
    """Attack: JSON nested thousands deep, which made the framework's decoder raise
    RecursionError (a 500). Now 400 bad_request, whether the nesting is in a field or the
    whole body."""
    for body in (_nested(5000), b"[" * 100_000 + b"]" * 100_000):
        refused = _raw_post(stack, path, body, merchant.api_key)
        assert refused.status_code == 400, refused.text
        assert reason(refused) == "bad_request"


@pytest.mark.parametrize("path", ["/v1/redeem", "/v1/check"])
def test_deeply_nested_json_at_the_till_is_400(stack: Stack, till_token: str, path: str) -> None:
    """The till routes (the fast path and the framework's) refuse nested JSON with 400 too."""
    refused = _raw_post(stack, path, b"[" * 2000 + b"]" * 2000, till_token)
    assert refused.status_code == 400, refused.text
    assert reason(refused) == "bad_request"


def test_nul_in_any_text_field_is_400(stack: Stack, merchant: Merchant) -> None:
    """Attack: a NUL character (which PostgreSQL text cannot hold, so the insert failed with
    a 500) in each text field of the merchant and till routes. Each is 400 bad_request."""
    store_id = merchant.created("/v1/stores", {"name": "Main"})["id"]
    nul = "a\u0000b"
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("/v1/stores", {"name": nul}),
        ("/v1/terminals", {"store_id": store_id, "name": nul}),
        ("/v1/campaigns", {"name": nul, "face_value": 1, "currency": "CNY"}),
        ("/v1/campaigns", {"name": "ok", "face_value": 1, "currency": "CNY", "timezone": nul}),
        ("/v1/webhooks", {"url": f"https://example.com/{nul}"}),
        ("/v1/api-keys", {"label": nul}),
    ]
    for path, body in attempts:
        refused = merchant.post(path, body)
        assert refused.status_code == 400, (path, refused.text)
        assert reason(refused) == "bad_request"
    campaign_id = merchant.campaign()
    renamed = merchant.stack.base_url + f"/v1/campaigns/{campaign_id}"
    patched = httpx.patch(renamed, json={"name": nul}, headers=merchant.headers)
    assert patched.status_code == 400
    assert reason(patched) == "bad_request"
    exchange = httpx.post(
        stack.base_url + "/v1/terminal/token", json={"terminal_id": 1, "secret": nul}
    )
    assert exchange.status_code == 400
    assert reason(exchange) == "bad_request"


def test_nul_in_a_link_or_claim_form_is_a_4xx(stack: Stack, merchant: Merchant) -> None:
    """Attack: a NUL in a pool id (sent to PostgreSQL as is: a 500) or in the identifier a
    consumer types on a claim or pool page. Pool ids are checked for their shape first (404);
    identifiers are 400."""
    campaign_id = merchant.campaign()
    order = merchant.order(campaign_id, 2)
    pool = merchant.created(f"/v1/campaigns/{campaign_id}/pools", {"order_id": order["id"]})
    export = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv").text
    link = export.splitlines()[1].split(",")[2]
    for response in (
        httpx.get(stack.base_url + "/p/%00"),
        httpx.post(stack.base_url + "/p/%00/claim", data={"identifier": "ana@example.com"}),
        httpx.get(stack.base_url + "/v1/pools/%00", headers=merchant.headers),
    ):
        assert response.status_code == 404, response.text
    for claim in (link + "/claim", pool["url"] + "/claim"):
        refused = httpx.post(claim, data={"identifier": "ana\u0000@example.com"})
        assert refused.status_code == 400, refused.text


def test_a_body_over_the_limit_is_413(stack: Stack, merchant: Merchant, till_token: str) -> None:
    """A body over 3 MiB (4 KiB at the till) is refused with 413 payload_too_large before it
    is read to the end; the fast path answered 400 before."""
    huge = merchant.post("/v1/codes/void", {"codes": ["A" * 200] * 20_000})
    assert huge.status_code == 413
    assert reason(huge) == "payload_too_large"
    for path in ("/v1/redeem", "/v1/check"):
        refused = till(stack, path, till_token, {"code": "A" * 5000, "nonce": "n"})
        assert refused.status_code == 413, refused.text
        assert reason(refused) == "payload_too_large"


def test_the_largest_void_fits_under_the_limit(merchant: Merchant) -> None:
    """A void of 10,000 codes of the longest form the schema allows (200 characters) is not
    refused for its size: the limit is sized for it."""
    codes = [secrets.token_hex(100).upper() for _ in range(10_000)]
    answer = merchant.post("/v1/codes/void", {"codes": codes})
    assert answer.status_code not in (413, 500), answer.text
