"""The public contract's edges: bad input, authentication and tenant isolation."""

from __future__ import annotations

import httpx
import pytest

from support import Merchant, Stack


@pytest.fixture(scope="module")
def two_merchants(stack: Stack) -> tuple[Merchant, Merchant, int, int]:
    """Merchants A and B; A has a store and a campaign with one order."""
    a, b = stack.new_merchant("A"), stack.new_merchant("B")
    store_id = a.created("/v1/stores", {"name": "A's store"})["id"]
    campaign_id = a.campaign()
    return a, b, store_id, campaign_id


def _problem(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["reason"] == reason
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "face_value": -1, "currency": "CNY"},
        {"name": "x", "face_value": 1, "currency": "yuan"},
        {"name": "", "face_value": 1, "currency": "CNY"},
        {"name": "x", "face_value": 1, "currency": "CNY", "hours": "25:00-06:00"},
        {"name": "x", "face_value": 1, "currency": "CNY", "timezone": "Mars/Olympus"},
        {"name": "x", "face_value": 1, "currency": "CNY", "valid_from": "2026-01-01T00:00:00"},
        {"name": "x", "face_value": 1, "currency": "CNY", "surprise": True},
        {"name": "x", "face_value": 1, "currency": "CNY", "algorithm": "md5"},
    ],
)
def test_bad_campaign_is_a_bad_request(
    two_merchants: tuple[Merchant, Merchant, int, int], body: dict[str, object]
) -> None:
    """Each malformed campaign gets 400 bad_request as problem+json, and nothing is created."""
    a, *_ = two_merchants
    _problem(a.post("/v1/campaigns", body), 400, "bad_request")


def test_an_unknown_ally_is_answered_like_a_real_merchant(
    stack: Stack, two_merchants: tuple[Merchant, Merchant, int, int]
) -> None:
    """Attack: probing which merchant ids exist by naming them in accepted_merchants (an
    unknown id used to get 400). A campaign naming an unknown id and one naming a real
    merchant that has not consented get the same answer: 201, the id listed as proposed,
    none accepted."""
    a, b, *_ = two_merchants
    answers = []
    for ally in (b.id, 999_999_999):
        body = {"name": "x", "face_value": 1, "currency": "CNY", "accepted_merchants": [ally]}
        response = a.post("/v1/campaigns", body)
        assert response.status_code == 201, response.text
        campaign = response.json()
        assert (campaign["accepted_merchants"], campaign["proposed_merchants"]) == ([], [ally])
        answers.append({k: v for k, v in campaign.items() if k not in ("id", "proposed_merchants")})
    assert answers[0] == answers[1]


def test_malformed_json_is_a_bad_request(
    stack: Stack, two_merchants: tuple[Merchant, Merchant, int, int]
) -> None:
    """A body that is not JSON gets 400 bad_request, not a 500."""
    a, *_ = two_merchants
    response = httpx.post(
        stack.base_url + "/v1/stores",
        content=b"{not json",
        headers={**a.headers, "Content-Type": "application/json"},
    )
    _problem(response, 400, "bad_request")


def test_order_quantity_must_be_positive(
    two_merchants: tuple[Merchant, Merchant, int, int],
) -> None:
    """Ordering zero codes is a bad request."""
    a, _, _, campaign_id = two_merchants
    _problem(a.post(f"/v1/campaigns/{campaign_id}/orders", {"quantity": 0}), 400, "bad_request")


def test_unknown_api_key_is_unauthorized(stack: Stack) -> None:
    """A made-up API key gets 401 unauthorized with a WWW-Authenticate challenge."""
    response = httpx.post(
        stack.base_url + "/v1/stores",
        json={"name": "x"},
        headers={"Authorization": "Bearer qrl_live_made_up"},
    )
    _problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def test_wrong_terminal_secret_is_unauthorized(
    stack: Stack, two_merchants: tuple[Merchant, Merchant, int, int]
) -> None:
    """The token exchange refuses a wrong secret and an unknown terminal alike."""
    a, _, store_id, _ = two_merchants
    terminal = a.created("/v1/terminals", {"store_id": store_id, "name": "t"})
    for body in (
        {"terminal_id": terminal["id"], "secret": "qrl_term_wrong"},
        {"terminal_id": 10**9, "secret": terminal["secret"]},
    ):
        _problem(httpx.post(stack.base_url + "/v1/terminal/token", json=body), 401, "unauthorized")


def test_unknown_route_is_not_found(stack: Stack) -> None:
    """An unknown path gets 404 not_found as problem+json."""
    _problem(httpx.get(stack.base_url + "/v1/nothing-here"), 404, "not_found")


def test_merchant_cannot_touch_another_merchants_things(
    two_merchants: tuple[Merchant, Merchant, int, int],
) -> None:
    """B can neither read nor order from A's campaign, nor read its order, nor use A's store."""
    a, b, store_id, campaign_id = two_merchants
    order = a.created(f"/v1/campaigns/{campaign_id}/orders", {"quantity": 2})
    _problem(b.get(f"/v1/campaigns/{campaign_id}"), 404, "not_found")
    _problem(b.get(f"/v1/campaigns/{campaign_id}/stats"), 404, "not_found")
    _problem(b.get(f"/v1/orders/{order['id']}"), 404, "not_found")
    _problem(b.get(f"/v1/orders/{order['id']}/codes"), 404, "not_found")
    _problem(b.post(f"/v1/campaigns/{campaign_id}/orders", {"quantity": 1}), 404, "not_found")
    _problem(b.post("/v1/terminals", {"store_id": store_id, "name": "intruder"}), 404, "not_found")
    codes = a.codes(campaign_id, 1)
    _problem(b.post("/v1/codes/void", {"codes": codes}), 404, "not_found")
    assert a.get(f"/v1/orders/{order['id']}").json()["quantity"] == 2


def test_idempotency_key_returns_the_first_order(
    two_merchants: tuple[Merchant, Merchant, int, int],
) -> None:
    """A repeated Idempotency-Key returns the first order; with another quantity, a conflict."""
    a, _, _, campaign_id = two_merchants
    path = f"/v1/campaigns/{campaign_id}/orders"
    first = a.post(path, {"quantity": 3}, **{"Idempotency-Key": "k-1"})
    again = a.post(path, {"quantity": 3}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["quantity"] == 3
    _problem(a.post(path, {"quantity": 4}, **{"Idempotency-Key": "k-1"}), 409, "conflict")


def test_export_json_lines_match_csv(two_merchants: tuple[Merchant, Merchant, int, int]) -> None:
    """The json export carries the same codes, typed forms and claim links as the csv export."""
    a, _, _, campaign_id = two_merchants
    order = a.order(campaign_id, 5)
    csv_rows = a.get(f"/v1/orders/{order['id']}/codes", format="csv").text.splitlines()[1:]
    json_rows = [
        httpx.Response(200, content=line).json()
        for line in a.get(f"/v1/orders/{order['id']}/codes", format="json").text.splitlines()
    ]
    assert [",".join((r["code"], r["typed"], r["claim_url"])) for r in json_rows] == csv_rows
    assert len(set(csv_rows)) == 5


def test_void_of_a_forged_code_voids_nothing(
    two_merchants: tuple[Merchant, Merchant, int, int],
) -> None:
    """One invalid code in a void request refuses the whole request: the valid codes stay usable."""
    a, _, _, campaign_id = two_merchants
    good = a.codes(campaign_id, 1)[0]
    response = a.post("/v1/codes/void", {"codes": [good, "A" * 45]})
    _problem(response, 422, "invalid")
    assert response.json()["index"] == 1
    stats = a.get(f"/v1/campaigns/{campaign_id}/stats").json()
    assert stats["voided"] == 0
