"""Credentials have a lifecycle: several labelled API keys per merchant, revoked on every API
process at once; terminal secrets rotate and end the tokens exchanged for the old one; a till's
retry after a reversal never consumes the code again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from qrloop.accounts import api_keys
from qrloop.errors import Problem, Reason
from support import (
    Merchant,
    Stack,
    Stores,
    eventually,
    fetchval,
    reason,
    redeem,
    serving,
    till,
)


def _as(stack: Stack, api_key: str) -> Merchant:
    """The merchant behind `api_key`, calling with that key (the id is not needed here)."""
    return Merchant(stack, 0, api_key)


def _new_key(merchant: Merchant, label: str) -> dict[str, Any]:
    response = merchant.post("/v1/api-keys", {"label": label})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _keys(merchant: Merchant) -> list[dict[str, Any]]:
    """The merchant's keys, oldest first (the API lists them newest first)."""
    response = merchant.get("/v1/api-keys")
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["items"]
    return listed[::-1]


def _authenticated(stack: Stack, api_key: str) -> bool:
    return _as(stack, api_key).get("/v1/api-keys").status_code == 200


# ---- merchant API keys ----


def test_several_keys_listed_with_prefix_label_and_use_never_a_secret(stack: Stack) -> None:
    """A merchant creates labelled keys that each work; the list shows id, prefix, label,
    created, last used (stamped at most once a minute) and revoked for every key (the first
    one labelled "initial"), and never a key or its digest."""
    merchant = stack.new_merchant("Many Keys")
    till_key = _new_key(merchant, "till software")
    unused = _new_key(merchant, "accounting")
    assert till_key["api_key"].startswith(till_key["prefix"])
    assert len(till_key["prefix"]) < 20 < len(till_key["api_key"])
    assert _authenticated(stack, till_key["api_key"])

    response = merchant.get("/v1/api-keys")
    for secret in (merchant.api_key, till_key["api_key"], unused["api_key"]):
        assert secret not in response.text
    listed = response.json()["items"][::-1]  # newest first
    assert [key["label"] for key in listed] == ["initial", "till software", "accounting"]
    for key in listed:
        assert key.keys() == {"id", "prefix", "label", "created_at", "last_used_at", "revoked_at"}
        assert key["created_at"] and key["revoked_at"] is None
    initial, used, never = listed
    assert merchant.api_key.startswith(initial["prefix"])
    assert (used["id"], used["prefix"]) == (till_key["id"], till_key["prefix"])
    assert initial["last_used_at"] and used["last_used_at"]
    assert never["last_used_at"] is None
    # Stamped at most once a minute, not on every request: these calls leave it as it was.
    assert _authenticated(stack, till_key["api_key"])
    assert [key["last_used_at"] for key in _keys(merchant)] == [
        initial["last_used_at"],
        used["last_used_at"],
        None,
    ]


def test_revoked_key_is_refused_within_a_second(stack: Stack) -> None:
    """A revoked API key gets 401 on every API process within a second; the list shows when it
    was revoked, and revoking it again answers the same."""
    merchant = stack.new_merchant("Leaky")
    leaked = _new_key(merchant, "leaked in a log")
    assert _authenticated(stack, leaked["api_key"])
    response = merchant.post(f"/v1/api-keys/{leaked['id']}/revoke", {})
    assert response.status_code == 200, response.text
    revoked_at = response.json()["revoked_at"]
    assert revoked_at

    eventually(lambda: not _authenticated(stack, leaked["api_key"]), within=1.0)
    refused = _as(stack, leaked["api_key"]).post("/v1/stores", {"name": "sneaky"})
    assert (refused.status_code, reason(refused)) == (401, "unauthorized")
    again = merchant.post(f"/v1/api-keys/{leaked['id']}/revoke", {})
    assert (again.status_code, again.json()["revoked_at"]) == (200, revoked_at)
    assert _keys(merchant)[1]["revoked_at"] == revoked_at


def test_last_live_key_cannot_be_revoked(stack: Stack) -> None:
    """Revoking the account's last live key is refused (409 conflict) and the key keeps
    working, so a merchant cannot lock itself out; with a successor it can be revoked."""
    merchant = stack.new_merchant("Careful")
    initial_id = _keys(merchant)[0]["id"]
    response = merchant.post(f"/v1/api-keys/{initial_id}/revoke", {})
    assert (response.status_code, reason(response)) == (409, "conflict")
    assert _authenticated(stack, merchant.api_key)

    successor = _new_key(merchant, "successor")
    assert merchant.post(f"/v1/api-keys/{initial_id}/revoke", {}).status_code == 200
    last = _as(stack, successor["api_key"]).post(f"/v1/api-keys/{successor['id']}/revoke", {})
    assert (last.status_code, reason(last)) == (409, "conflict")


def test_concurrent_revocations_leave_one_live_key(stack: Stack) -> None:
    """Lockout by race: revoking both of an account's two keys at the same moment revokes
    exactly one of them (the other answer is 409 conflict), so one key always stays live.
    Several accounts race at once, so the two revocations of each do overlap."""
    merchants = [stack.new_merchant(f"Racing {i}") for i in range(4)]
    revocations = [
        (merchant, key_id)
        for merchant in merchants
        for key_id in (_keys(merchant)[0]["id"], _new_key(merchant, "second")["id"])
    ]

    async def race() -> list[int]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(f"/v1/api-keys/{key_id}/revoke", json={}, headers=m.headers)
                    for m, key_id in revocations
                )
            )
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(race())
    # Both revocations authenticate with the first key: when the first key's revocation
    # commits before the other request is authenticated, that one is 401, not 409. Either
    # way exactly one revocation succeeds per account.
    pairs = [sorted(statuses[i : i + 2]) for i in range(0, len(statuses), 2)]
    assert all(pair in ([200, 409], [200, 401]) for pair in pairs), pairs
    live = "SELECT count(*) FROM api_keys WHERE merchant_id = $1 AND revoked_at IS NULL"
    assert [fetchval(stack, live, merchant.id) for merchant in merchants] == [1] * 4


def test_revocations_in_overlapping_transactions_keep_one_key(stack: Stack) -> None:
    """The lock itself, without HTTP timing: two revocations of an account's two live keys,
    run in overlapping transactions, end with one revoked and the other refused as the last
    live key (409 conflict)."""
    merchant = stack.new_merchant("Racing in SQL")
    first, second = _keys(merchant)[0]["id"], _new_key(merchant, "second")["id"]

    async def race() -> list[object]:
        pool = await asyncpg.create_pool(stack.stores.database_url, min_size=2, max_size=2)
        try:
            return await asyncio.gather(
                api_keys.revoke(pool, merchant.id, first),
                api_keys.revoke(pool, merchant.id, second),
                return_exceptions=True,
            )
        finally:
            await pool.close()

    outcomes = asyncio.run(race())
    refused = [o for o in outcomes if isinstance(o, Problem)]
    assert len(refused) == 1 and refused[0].reason is Reason.CONFLICT, outcomes
    live = "SELECT count(*) FROM api_keys WHERE merchant_id = $1 AND revoked_at IS NULL"
    assert fetchval(stack, live, merchant.id) == 1


def test_other_merchant_cannot_list_or_revoke_my_keys(stack: Stack) -> None:
    """Cross-tenant key theft: another merchant's list never shows my keys, and revoking one of
    them by id is 404, as if it did not exist; my key keeps working."""
    mine = stack.new_merchant("Victim")
    my_key = _new_key(mine, "second")
    stranger = stack.new_merchant("Attacker")
    _new_key(stranger, "spare")  # so the last-live-key rule is not what answers
    listed = _keys(stranger)
    assert my_key["id"] not in {key["id"] for key in listed}
    assert {key["label"] for key in listed} == {"initial", "spare"}
    for key_id in (my_key["id"], _keys(mine)[0]["id"]):
        response = stranger.post(f"/v1/api-keys/{key_id}/revoke", {})
        assert (response.status_code, reason(response)) == (404, "not_found")
    assert _authenticated(stack, my_key["api_key"])
    assert all(key["revoked_at"] is None for key in _keys(mine))


def test_bad_label_is_a_bad_request(stack: Stack) -> None:
    """An empty, too long or missing label, or an unknown field, is 400 bad_request."""
    merchant = stack.new_merchant("Sloppy")
    for body in ({"label": ""}, {"label": "x" * 101}, {}, {"label": "a", "key": "mine"}):
        response = merchant.post("/v1/api-keys", body)
        assert (response.status_code, reason(response)) == (400, "bad_request")
    assert len(_keys(merchant)) == 1


def test_ids_out_of_range_name_nothing(stack: Stack) -> None:
    """A key, terminal or store id outside 1..2^63-1 in a path is 404 not_found, like any id
    that names nothing (and like every other route's ids), never a 500 from the database."""
    merchant = stack.new_merchant("Fuzzer")
    for path in (
        "/v1/api-keys/{}/revoke",
        "/v1/terminals/{}/rotate-secret",
        "/v1/terminals/{}/disable",
        "/v1/stores/{}/enable",
    ):
        for bad_id in (0, 2**63, 10**20):
            response = merchant.post(path.format(bad_id), {})
            assert (response.status_code, reason(response)) == (404, "not_found"), path


def test_cli_creates_lists_and_revokes_keys(stack: Stack) -> None:
    """`qrloop merchants keys create|list|revoke`: the new key works, the list is aligned and
    shows no secret, a revoked key is refused within a second, the last live key is kept."""
    merchant = stack.new_merchant("Operator's")
    created = dict(
        line.split("=", 1)
        for line in stack.cli(
            "merchants", "keys", "create", str(merchant.id), "--label", "back office"
        ).stdout.split()
    )
    assert _authenticated(stack, created["api_key"])

    listing = stack.cli("merchants", "keys", "list", str(merchant.id)).stdout
    header, *rows = listing.splitlines()
    assert header.split() == ["id", "prefix", "label", "created", "last", "used", "revoked"]
    assert [row.split()[0] for row in rows] == [str(key["id"]) for key in _keys(merchant)]
    labels = ("initial", "back office")
    assert {row.index(label) for row, label in zip(rows, labels, strict=True)} == {
        header.index("label")
    }
    assert {row.index("-", header.index("revoked")) for row in rows} == {header.index("revoked")}
    assert merchant.api_key not in listing and created["api_key"] not in listing

    stack.cli("merchants", "keys", "revoke", created["key_id"])
    eventually(lambda: not _authenticated(stack, created["api_key"]), within=1.0)
    initial_id = str(_keys(merchant)[0]["id"])
    refused = stack.cli("merchants", "keys", "revoke", initial_id, check=False)
    assert refused.returncode == 1 and "last live key" in refused.stderr
    unknown = stack.cli("merchants", "keys", "create", "999999", "--label", "x", check=False)
    assert unknown.returncode == 1 and "no merchant 999999" in unknown.stderr


# ---- terminal secrets ----


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


def _checks(stack: Stack, token: str, code: str) -> int:
    return till(stack, "/v1/check", token, {"code": code}).status_code


def test_rotated_secret_ends_the_old_secret_and_its_tokens(stack: Stack) -> None:
    """Stolen terminal credentials: after rotate-secret the old secret is refused by the token
    exchange at once (401), and an access token exchanged for it before the rotation is refused
    within a second (401, like an invalid token) on /v1/check and on /v1/redeem (fast path)."""
    shop = Till(stack)
    stolen_token = shop.token(shop.secret)
    code = shop.code()
    assert _checks(stack, stolen_token, code) == 200

    new_secret = shop.rotate()
    assert new_secret != shop.secret
    old = shop.exchange(shop.secret)
    assert (old.status_code, reason(old)) == (401, "unauthorized")

    eventually(lambda: _checks(stack, stolen_token, code) == 401, within=1.0)
    refused = redeem(stack, stolen_token, code)
    assert (refused.status_code, reason(refused)) == (401, "unauthorized")
    assert refused.json()["detail"] == redeem(stack, "garbage", code).json()["detail"]
    assert redeem(stack, shop.token(new_secret), code).status_code == 200


def test_token_exchanged_right_after_rotation_works(stack: Stack) -> None:
    """A token exchanged for the new secret in the same instant as the rotation is valid at
    once and stays valid once every process knows of the rotation (no same-second refusal)."""
    shop = Till(stack)
    before = shop.token(shop.secret)
    fresh = shop.token(shop.rotate())
    code = shop.code()
    assert _checks(stack, fresh, code) == 200
    eventually(lambda: _checks(stack, before, code) == 401, within=1.0)
    for _ in range(5):  # several answers, so more than one API process is likely asked
        assert _checks(stack, fresh, code) == 200
    assert redeem(stack, fresh, code).status_code == 200


def test_a_second_rotation_ends_the_first_rotations_tokens(stack: Stack) -> None:
    """Tokens of the secret from the first rotation are refused after the second one."""
    shop = Till(stack)
    first = shop.token(shop.rotate())
    second = shop.token(shop.rotate())
    code = shop.code()
    eventually(lambda: _checks(stack, first, code) == 401, within=1.0)
    assert _checks(stack, second, code) == 200


def test_other_merchant_cannot_rotate_my_terminal(stack: Stack) -> None:
    """Rotating another merchant's terminal (to take it over or lock it out) is 404, and the
    terminal's secret and tokens keep working."""
    shop = Till(stack)
    token = shop.token(shop.secret)
    stranger = stack.new_merchant("Saboteur")
    response = stranger.post(f"/v1/terminals/{shop.terminal_id}/rotate-secret", {})
    assert (response.status_code, reason(response)) == (404, "not_found")
    assert shop.exchange(shop.secret).status_code == 200
    assert _checks(stack, token, shop.code()) == 200


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
