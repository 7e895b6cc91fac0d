"""The till's answers through HTTP: one test per reason, reversals, retries, tenants, terminals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from qrloop.accounts.tokens import TerminalClaims, mint
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from support import Stack, Stores, check_status, eventually, reason, redeem, serving, till


class Shop:
    """A merchant with a store, a till and one campaign's codes, handed out one at a time."""

    def __init__(self, stack: Stack, **campaign: object) -> None:
        self.stack = stack
        self.merchant = stack.new_merchant()
        self.store_id = self.merchant.created("/v1/stores", {"name": "Main"})["id"]
        self.terminal_id, self.token = self.merchant.terminal(self.store_id)
        self.campaign_id = self.merchant.campaign(**campaign)
        self._codes = iter(self.merchant.codes(self.campaign_id, 30))

    def code(self) -> str:
        return next(self._codes)


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Shop:
    return Shop(stack)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def test_invalid(stack: Stack, shop: Shop) -> None:
    """A forged or garbled code is refused with 422 invalid, the same answer whatever is wrong."""
    code = shop.code()
    forged = code[:-5] + ("AAAAA" if not code.endswith("AAAAA") else "BBBBB")
    for attempt in (forged, "A" * 45, "not a code", code.lower()[:-1]):
        response = redeem(stack, shop.token, attempt)
        assert response.status_code == 422
        assert reason(response) == "invalid"
        assert response.json()["detail"] == "This is not a valid code."


def test_voided(stack: Stack, shop: Shop) -> None:
    """A voided code is refused with 409 voided."""
    code = shop.code()
    shop.merchant.post("/v1/codes/void", {"codes": [code]})
    response = redeem(stack, shop.token, code)
    assert (response.status_code, reason(response)) == (409, "voided")


def test_already_redeemed_says_when_and_where(stack: Stack, shop: Shop) -> None:
    """A used code is refused with 409 already_redeemed, naming the store and the time of use."""
    code = shop.code()
    assert redeem(stack, shop.token, code).status_code == 200
    response = redeem(stack, shop.token, code)
    assert (response.status_code, reason(response)) == (409, "already_redeemed")
    assert response.json()["store_id"] == shop.store_id
    used_at = datetime.fromisoformat(response.json()["redeemed_at"])
    assert abs((datetime.now(UTC) - used_at).total_seconds()) < 60


def test_not_yet_valid(stack: Stack) -> None:
    """Before valid_from, a code is refused with 403 not_yet_valid."""
    shop = Shop(stack, valid_from=_iso(datetime.now(UTC) + timedelta(days=1)))
    response = redeem(stack, shop.token, shop.code())
    assert (response.status_code, reason(response)) == (403, "not_yet_valid")


def test_expired(stack: Stack) -> None:
    """After valid_until, a code is refused with 403 expired."""
    now = datetime.now(UTC)
    shop = Shop(
        stack, valid_from=_iso(now - timedelta(days=2)), valid_until=_iso(now - timedelta(days=1))
    )
    response = redeem(stack, shop.token, shop.code())
    assert (response.status_code, reason(response)) == (403, "expired")


def _window(start_offset_hours: int, end_offset_hours: int) -> str:
    hour = datetime.now(UTC).hour
    return f"{(hour + start_offset_hours) % 24:02d}:00-{(hour + end_offset_hours) % 24:02d}:00"


def test_outside_hours(stack: Stack) -> None:
    """Outside the campaign's daily hours, a code is refused with 403 outside_hours."""
    shop = Shop(stack, hours=_window(2, 3), timezone="UTC")
    response = redeem(stack, shop.token, shop.code())
    assert (response.status_code, reason(response)) == (403, "outside_hours")


def test_inside_hours_redeems(stack: Stack) -> None:
    """Within the daily hours (a window around now, in another timezone) a code redeems."""
    # Tokyo is UTC+9 all year, so the window is the same hours shifted by nine.
    hour = (datetime.now(UTC).hour + 9) % 24
    window = f"{(hour - 1) % 24:02d}:00-{(hour + 2) % 24:02d}:00"
    shop = Shop(stack, hours=window, timezone="Asia/Tokyo")
    assert redeem(stack, shop.token, shop.code()).status_code == 200


def test_not_accepted_here(stack: Stack, shop: Shop) -> None:
    """Another merchant's till is refused with 403 not_accepted_here; the till of a merchant
    that accepted an agreement on the campaign accepts, naming the issuer."""
    stranger = stack.new_merchant("Stranger")
    stranger_store = stranger.created("/v1/stores", {"name": "Elsewhere"})["id"]
    response = redeem(stack, stranger.terminal_token(stranger_store), shop.code())
    assert (response.status_code, reason(response)) == (403, "not_accepted_here")

    ally = stack.new_merchant("Ally")
    ally_token = ally.terminal_token(ally.created("/v1/stores", {"name": "Partner"})["id"])
    alliance = Shop(stack, accepted_merchants=[ally.id])
    code = alliance.code()
    ally.accept(alliance.campaign_id)
    eventually(lambda: check_status(stack, ally_token, code) == "valid", within=1.0)
    response = redeem(stack, ally_token, code)
    assert response.status_code == 200
    assert response.json()["issuer_merchant_id"] == alliance.merchant.id


def test_campaign_paused_within_a_second(stack: Stack) -> None:
    """A pause reaches the till within a second (403 campaign_paused); resuming lifts it."""
    shop = Shop(stack)
    code = shop.code()
    assert shop.merchant.post(f"/v1/campaigns/{shop.campaign_id}/pause", {}).status_code == 200

    def paused() -> bool:
        return (
            till(stack, "/v1/check", shop.token, {"code": code}).json()["status"]
            == "campaign_paused"
        )

    eventually(paused, within=1.0)
    response = redeem(stack, shop.token, code)
    assert (response.status_code, reason(response)) == (403, "campaign_paused")
    shop.merchant.post(f"/v1/campaigns/{shop.campaign_id}/resume", {})
    eventually(lambda: not paused(), within=1.0)
    assert redeem(stack, shop.token, code).status_code == 200


def test_new_window_applies_within_a_second(stack: Stack) -> None:
    """Moving valid_until into the past through PATCH makes the till answer expired within 1 s."""
    shop = Shop(stack)
    code = shop.code()
    past = _iso(datetime.now(UTC) - timedelta(minutes=1))
    response = httpx.patch(
        f"{stack.base_url}/v1/campaigns/{shop.campaign_id}",
        json={"valid_from": _iso(datetime.now(UTC) - timedelta(days=1)), "valid_until": past},
        headers=shop.merchant.headers,
    )
    assert response.status_code == 200, response.text
    eventually(
        lambda: till(stack, "/v1/check", shop.token, {"code": code}).json()["status"] == "expired",
        within=1.0,
    )


def test_rate_limited_after_ten_invalid_scans(stack: Stack) -> None:
    """The 11th invalid scan in a minute gets 429 rate_limited with Retry-After, and then even
    a valid code from that terminal is refused; another terminal is unaffected."""
    shop = Shop(stack)
    _, guesser = shop.merchant.terminal(shop.store_id, "guesser")
    # The limit counts per clock minute: start well inside one so all eleven land in it.
    if time.time() % 60 > 50:
        eventually(lambda: time.time() % 60 < 50, within=11)
    answers = [redeem(stack, guesser, "A" * 45).status_code for _ in range(11)]
    assert answers == [422] * 10 + [429]
    blocked = redeem(stack, guesser, shop.code())
    assert (blocked.status_code, reason(blocked)) == (429, "rate_limited")
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert redeem(stack, shop.token, shop.code()).status_code == 200


def test_retry_with_same_nonce_is_answered_alike(stack: Stack, shop: Shop) -> None:
    """A timed-out till retrying with its nonce gets `redeemed` and the same id, not a refusal;
    another till, or the same till with a new nonce, is refused."""
    code = shop.code()
    first = redeem(stack, shop.token, code, nonce="till-retry-7")
    retry = redeem(stack, shop.token, code, nonce="till-retry-7")
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    other_till = shop.merchant.terminal_token(shop.store_id, "other")
    for token, nonce in ((other_till, "till-retry-7"), (shop.token, "till-retry-8")):
        refused = redeem(stack, token, code, nonce=nonce)
        assert (refused.status_code, reason(refused)) == (409, "already_redeemed")


def test_reverse_then_redeem_again_once(stack: Stack, shop: Shop) -> None:
    """A reversed redemption frees the code for exactly one more redemption."""
    code = shop.code()
    first = redeem(stack, shop.token, code).json()
    reversed_ = till(stack, f"/v1/redemptions/{first['redemption_id']}/reverse", shop.token, {})
    assert reversed_.json() == {"status": "reversed", "redemption_id": first["redemption_id"]}
    again = till(stack, f"/v1/redemptions/{first['redemption_id']}/reverse", shop.token, {})
    assert again.status_code == 200
    second = redeem(stack, shop.token, code)
    assert second.status_code == 200
    assert second.json()["redemption_id"] != first["redemption_id"]
    third = redeem(stack, shop.token, code)
    assert (third.status_code, reason(third)) == (409, "already_redeemed")


def test_reverse_only_from_the_same_store(stack: Stack, shop: Shop) -> None:
    """Another store of the same merchant cannot reverse a redemption (404, as if unknown)."""
    redemption = redeem(stack, shop.token, shop.code()).json()["redemption_id"]
    other_store = shop.merchant.created("/v1/stores", {"name": "Other"})["id"]
    other = shop.merchant.terminal_token(other_store)
    response = till(stack, f"/v1/redemptions/{redemption}/reverse", other, {})
    assert (response.status_code, reason(response)) == (404, "not_found")


def test_reverse_after_the_window_is_refused(stack: Stack) -> None:
    """With a zero-second reversal window, a reversal is refused with 409 conflict."""
    shop = Shop(stack, reversal_window_s=0)
    redemption = redeem(stack, shop.token, shop.code()).json()["redemption_id"]
    response = till(stack, f"/v1/redemptions/{redemption}/reverse", shop.token, {})
    assert (response.status_code, reason(response)) == (409, "conflict")


def test_hundred_concurrent_redeems_from_many_terminals_succeed_once(
    stack: Stack, shop: Shop
) -> None:
    """100 simultaneous redeems of one code from 20 terminals give exactly one success."""
    tokens = [shop.merchant.terminal_token(shop.store_id, f"t{i}") for i in range(20)]
    code = shop.code()

    async def storm() -> list[int]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/v1/redeem",
                        json={"code": code, "nonce": f"c{i}"},
                        headers={"Authorization": f"Bearer {tokens[i % 20]}"},
                    )
                    for i in range(100)
                )
            )
        return [r.status_code for r in responses]

    statuses = asyncio.run(storm())
    assert statuses.count(200) == 1
    assert statuses.count(409) == 99


def test_disabled_terminal_is_refused_within_five_seconds(stack: Stack, shop: Shop) -> None:
    """A disabled terminal's unexpired token is refused within 5 s (401); enabling restores it."""
    terminal_id, token = shop.merchant.terminal(shop.store_id, "to-disable")
    code = shop.code()
    shop.merchant.post(f"/v1/terminals/{terminal_id}/disable", {})

    def refused() -> bool:
        return till(stack, "/v1/check", token, {"code": code}).status_code == 401

    eventually(refused, within=5.0)
    response = redeem(stack, token, code)
    assert (response.status_code, reason(response)) == (401, "unauthorized")
    shop.merchant.post(f"/v1/terminals/{terminal_id}/enable", {})
    eventually(lambda: not refused(), within=5.0)


def test_disabled_store_refuses_its_terminals(stack: Stack) -> None:
    """Disabling a store refuses all its terminals within 5 s, and no new token is issued."""
    shop = Shop(stack)
    shop.merchant.post(f"/v1/stores/{shop.store_id}/disable", {})
    eventually(lambda: redeem(stack, shop.token, shop.code()).status_code == 401, within=5.0)
    terminal = shop.merchant.post("/v1/terminals", {"store_id": shop.store_id, "name": "new"})
    assert terminal.status_code == 404


def test_other_merchant_cannot_disable_my_terminal(stack: Stack, shop: Shop) -> None:
    """Disabling a terminal of another merchant is 404, and the terminal keeps working."""
    stranger = stack.new_merchant("Prankster")
    response = stranger.post(f"/v1/terminals/{shop.terminal_id}/disable", {})
    assert (response.status_code, reason(response)) == (404, "not_found")


def _ring(stack: Stack) -> KeyRing:
    return KeyRing.load(stack.workdir / "keys" / "keyring.json")


def test_expired_or_forged_token_is_unauthorized(stack: Stack, shop: Shop) -> None:
    """A correctly signed but expired token, an unsigned (alg none) one and garbage get 401."""
    claims = TerminalClaims(shop.terminal_id, shop.store_id, shop.merchant.id, int(time.time()) - 5)
    expired = mint(_ring(stack), claims)
    header, payload, _ = expired.split(".")
    unsigned = f"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."
    for token in (expired, unsigned, f"{header}.{payload}.AAAA", "garbage"):
        response = redeem(stack, token, shop.code())
        assert (response.status_code, reason(response)) == (401, "unauthorized")


def test_bad_body_is_bad_request(stack: Stack, shop: Shop) -> None:
    """A redeem body without a nonce, with unknown fields or not JSON gets 400 bad_request."""
    for body in ({"code": shop.code()}, {"code": "x", "nonce": "n", "extra": 1}):
        response = till(stack, "/v1/redeem", shop.token, body)
        assert (response.status_code, reason(response)) == (400, "bad_request")
    raw = httpx.post(
        stack.base_url + "/v1/redeem",
        content=b"{oops",
        headers={"Authorization": f"Bearer {shop.token}"},
    )
    assert (raw.status_code, reason(raw)) == (400, "bad_request")


# ---- keys: a stack with its own key ring, so revoking a key touches no other test ----


@pytest.fixture(scope="module")
def keyed_stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serving(stores, tmp_path_factory.mktemp("keyed")) as running:
        yield running


def test_revoked_key_without_restart(keyed_stack: Stack) -> None:
    """`qrloop keys revoke` reaches the running till within a second: 422 revoked_key, while codes
    of the rotated-in key redeem."""
    shop = Shop(keyed_stack)
    old_code = shop.code()
    old_key = _ring(keyed_stack).signing_key(Purpose.CODE, Algorithm.HMAC_SHA256).id
    keyed_stack.cli("keys", "rotate")
    keyed_stack.cli("keys", "revoke", str(old_key))
    eventually(
        lambda: (
            till(keyed_stack, "/v1/check", shop.token, {"code": old_code}).json()["status"]
            == "revoked_key"
        ),
        within=1.5,
    )
    response = redeem(keyed_stack, shop.token, old_code)
    assert (response.status_code, reason(response)) == (422, "revoked_key")
    new_codes = shop.merchant.codes(shop.campaign_id, 1)
    assert redeem(keyed_stack, shop.token, new_codes[0]).status_code == 200


# ---- the framework route answers exactly like the fast path ----


@pytest.fixture(scope="module")
def framework_stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serving(stores, tmp_path_factory.mktemp("framework"), QRLOOP_FAST_PATH="false") as running:
        yield running


_REDEEMED_FIELDS = ",".join(
    sorted([
        "status", "redemption_id", "campaign_id", "serial", "face_value", "currency",
        "issuer_merchant_id", "issuer_name", "reversed", "reversal_window_s",
    ])
)  # fmt: skip


def test_framework_route_answers_like_the_fast_path(stack: Stack, framework_stack: Stack) -> None:
    """With QRLOOP_FAST_PATH=false the Litestar route gives the same statuses and reasons,
    and the same redeemed body, naming the issuing merchant."""

    def answers(target: Stack) -> list[tuple[int, str]]:
        shop = Shop(target)
        code = shop.code()
        seen: list[tuple[int, str]] = []
        for response in (
            redeem(target, shop.token, code),
            redeem(target, shop.token, code),
            redeem(target, shop.token, "B" * 45),
            redeem(target, "nope", code),
            till(target, "/v1/redeem", shop.token, {"code": code}),
        ):
            seen.append(
                (response.status_code, response.json().get("reason") or response.json()["status"])
            )
            if response.status_code == 200:
                body = response.json()
                assert (body["issuer_merchant_id"], body["issuer_name"]) == (
                    shop.merchant.id,
                    "Cone & Co",
                )
                seen.append((200, ",".join(sorted(body))))
        return seen

    assert (
        answers(stack)
        == answers(framework_stack)
        == [
            (200, "redeemed"),
            (200, _REDEEMED_FIELDS),
            (409, "already_redeemed"),
            (422, "invalid"),
            (401, "unauthorized"),
            (400, "bad_request"),
        ]
    )


def test_openapi_documents_the_till(stack: Stack) -> None:
    """/schema/openapi.json documents redeem, check and reverse with their bodies."""
    paths = httpx.get(stack.base_url + "/schema/openapi.json").json()["paths"]
    assert "post" in paths["/v1/redeem"]
    assert "post" in paths["/v1/check"]
    assert "post" in paths["/v1/redemptions/{redemption_id}/reverse"]
