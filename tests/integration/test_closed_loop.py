"""The closed loop through HTTP against a real server: order, redeem, refuse, settle."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest

from qrloop.codes.format import to_typed

pytestmark = pytest.mark.usefixtures("stack")


def redeem(stack, token: str, code: str, nonce: str | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(
        stack.base_url + "/v1/redeem",
        json={"code": code, "nonce": nonce or uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def tamper(code: str) -> str:
    """The same code with one character of its tag changed."""
    middle = len(code) // 2 + 10
    replacement = "A" if code[middle] != "A" else "B"
    return code[:middle] + replacement + code[middle + 1 :]


async def settled_rows(database_url: str, campaign_id: int, serial: int, expected: int) -> int:
    """Count the redemption rows of a code, polling until `expected` appear or 20 s pass."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + 20
        while True:
            count: int = await connection.fetchval(
                "SELECT count(*) FROM redemptions WHERE campaign_id = $1 AND serial = $2",
                campaign_id,
                serial,
            )
            if count >= expected or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def shop(stack):  # type: ignore[no-untyped-def]
    """A merchant with a store, a till token and a campaign of 20 codes."""
    merchant = stack.new_merchant()
    store_id = merchant.created("/v1/stores", {"name": "Flagship"})["id"]
    token = merchant.terminal_token(store_id)
    campaign_id = merchant.campaign()
    return merchant, store_id, token, campaign_id, merchant.codes(campaign_id, 20)


def test_redeem_then_replay_is_refused_and_settles_once(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """A fresh code redeems (200); again it gets 409 already_redeemed; one row settles."""
    _, store_id, token, campaign_id, codes = shop
    first = redeem(stack, token, codes[0])
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "redeemed"
    assert body["campaign_id"] == campaign_id and body["face_value"] == 500
    assert body["currency"] == "CNY"

    again = redeem(stack, token, codes[0])
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["reason"] == "already_redeemed"

    rows = asyncio.run(settled_rows(stack.stores.database_url, campaign_id, body["serial"], 1))
    assert rows == 1
    later = redeem(stack, token, codes[0]).json()
    assert later["store_id"] == store_id
    assert later["redeemed_at"].startswith("20")


def test_tampered_code_is_invalid(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """A code with one changed character gets 422 invalid and consumes nothing."""
    _, _, token, _, codes = shop
    response = redeem(stack, token, tamper(codes[1]))
    assert response.status_code == 422
    assert response.json()["reason"] == "invalid"
    assert redeem(stack, token, codes[1]).status_code == 200


def test_no_token_is_unauthorized(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """Redeem without a bearer token gets 401 unauthorized as problem+json."""
    _, _, _, _, codes = shop
    response = httpx.post(stack.base_url + "/v1/redeem", json={"code": codes[2], "nonce": "n1"})
    assert response.status_code == 401
    assert response.json()["reason"] == "unauthorized"
    forged = httpx.post(
        stack.base_url + "/v1/redeem",
        json={"code": codes[2], "nonce": "n1"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert forged.status_code == 401


def test_typed_form_in_lowercase_redeems(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """The typed form, lowercase with its dashes, redeems the code."""
    _, _, token, _, codes = shop
    response = redeem(stack, token, to_typed(codes[3]).lower())
    assert response.status_code == 200, response.text


def test_retry_with_same_nonce_gets_the_original_answer(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """A till that retries with the same nonce gets `redeemed` and the same redemption id."""
    _, _, token, _, codes = shop
    first = redeem(stack, token, codes[4], nonce="retry-1")
    retry = redeem(stack, token, codes[4], nonce="retry-1")
    assert first.status_code == retry.status_code == 200
    assert retry.json()["redemption_id"] == first.json()["redemption_id"]


def test_check_does_not_consume(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """/v1/check says valid twice, naming the issuer, and the code still redeems afterwards."""
    merchant, _, token, campaign_id, codes = shop
    for _ in range(2):
        response = httpx.post(
            stack.base_url + "/v1/check",
            json={"code": codes[5]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.json() == {
            "status": "valid",
            "campaign_id": campaign_id,
            "face_value": 500,
            "currency": "CNY",
            "issuer_merchant_id": merchant.id,
            "issuer_name": "Cone & Co",
        }
    assert redeem(stack, token, codes[5]).status_code == 200


def test_voided_code_is_refused(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """A code voided by its merchant gets 409 voided at the till."""
    merchant, _, token, _, codes = shop
    assert merchant.post("/v1/codes/void", {"codes": [codes[6], codes[6]]}).json() == {"voided": 1}
    response = redeem(stack, token, codes[6])
    assert response.status_code == 409
    assert response.json()["reason"] == "voided"


def test_two_hundred_concurrent_redeems_of_one_code_succeed_once(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """200 simultaneous redeems of one code from 10 terminals: one 200, 199 refusals, one row."""
    merchant, store_id, _, campaign_id, codes = shop
    tokens = [merchant.terminal_token(store_id, f"till-{i}") for i in range(10)]
    code = codes[7]

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/redeem",
                        json={"code": code, "nonce": f"storm-{i}"},
                        headers={"Authorization": f"Bearer {tokens[i % 10]}"},
                    )
                    for i in range(200)
                )
            )

    responses = asyncio.run(storm())
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1
    assert all(r.json()["reason"] == "already_redeemed" for r in responses if r.status_code != 200)
    assert len(responses) == 200
    serial = winners[0].json()["serial"]
    assert asyncio.run(settled_rows(stack.stores.database_url, campaign_id, serial, 1)) == 1


def test_stats_count_what_happened(stack, shop) -> None:  # type: ignore[no-untyped-def]
    """Campaign stats report issued, redeemed and voided codes from the live state."""
    merchant, _, _, campaign_id, _ = shop
    stats = merchant.get(f"/v1/campaigns/{campaign_id}/stats").json()
    assert stats["issued"] == 20
    assert stats["voided"] == 1
    assert stats["redeemed"] >= 5
