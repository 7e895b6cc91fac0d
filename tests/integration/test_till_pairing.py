"""Pairing a phone as a till through the merchant API and the pages the phone opens: one-time
links that expire, tenants kept apart, a credential of the phone's own that the merchant
revokes, and the till page's own script under its Content-Security-Policy."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from support import Merchant, Stack, eventually, fetch, fetchval, reason, redeem, till

EXCHANGE = {"X-Qrloop-Till": "1"}


class Terminal:
    """A merchant's store and terminal, with codes to scan."""

    def __init__(self, stack: Stack, merchant: Merchant) -> None:
        self.stack = stack
        self.merchant = merchant
        store = merchant.created("/v1/stores", {"name": "Harbour Road"})["id"]
        self.id = merchant.created("/v1/terminals", {"store_id": store, "name": "Counter 2"})["id"]
        self.campaign = merchant.campaign()

    def pairing(self) -> dict[str, str]:
        return self.merchant.created(f"/v1/terminals/{self.id}/pairings", {})


def phone(stack: Stack) -> httpx.Client:
    """A browser of its own: its cookies stay with it, as on a phone."""
    return httpx.Client(base_url=stack.base_url, timeout=30)


def pair(browser: httpx.Client, url: str) -> httpx.Response:
    """What the pairing page's button does: a same-origin POST to the link."""
    path = urlsplit(url).path
    origin = str(browser.base_url).rstrip("/")
    return browser.post(path, headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})


def access_token(browser: httpx.Client) -> str:
    response = browser.post("/till/token", headers=EXCHANGE)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def merchant(stack: Stack) -> Merchant:
    return stack.new_merchant("Harbour Cones")


def test_a_pairing_link_pairs_one_phone_once(stack: Stack, merchant: Merchant) -> None:
    """The link's page names the till without spending the link; the phone that confirms gets
    an HttpOnly cookie of its own and a till that redeems; the link then shows a clear 'spent'
    page to everyone, and the merchant lists the one device."""
    terminal = Terminal(stack, merchant)
    pairing = terminal.pairing()
    assert pairing["url"] == f"{stack.base_url}/till/pair/{pairing['token']}"
    assert pairing["qr_svg"].startswith("<svg")
    with phone(stack) as first, phone(stack) as second:
        offer = first.get(urlsplit(pairing["url"]).path)
        assert offer.status_code == 200
        assert "Counter 2" in offer.text and "Harbour Road" in offer.text
        paired = pair(first, pairing["url"])
        assert (paired.status_code, paired.headers["location"]) == (303, "/till/")
        cookie = paired.headers["set-cookie"].lower()
        assert all(flag in cookie for flag in ("httponly", "samesite=strict", "path=/till"))

        token = access_token(first)
        code = merchant.codes(terminal.campaign, 1)[0]
        assert redeem(stack, token, code).status_code == 200

        again = pair(second, pairing["url"])
        assert again.status_code == 410
        assert "expired or was already used" in again.text
        assert second.get(urlsplit(pairing["url"]).path).status_code == 410
        assert second.post("/till/token", headers=EXCHANGE).status_code == 401

    devices = merchant.get(f"/v1/terminals/{terminal.id}/devices").json()["items"]
    assert [device["revoked_at"] for device in devices] == [None]
    assert devices[0]["last_used_at"] is not None


def test_an_expired_link_pairs_nothing(stack: Stack, merchant: Merchant) -> None:
    """Ten minutes after it was made, the link shows the 'spent' page and pairs nothing, and
    is deleted when the terminal's next link is made."""
    terminal = Terminal(stack, merchant)
    pairing = terminal.pairing()
    fetchval(
        stack,
        "UPDATE till_pairings SET expires_at = now() - interval '1 second'"
        " WHERE terminal_id = $1 RETURNING id",
        terminal.id,
    )
    with phone(stack) as browser:
        assert browser.get(urlsplit(pairing["url"]).path).status_code == 410
        assert pair(browser, pairing["url"]).status_code == 410
        assert browser.post("/till/token", headers=EXCHANGE).status_code == 401
    assert merchant.get(f"/v1/terminals/{terminal.id}/devices").json()["items"] == []
    # The terminal's next link deletes the expired one, which still reads as spent.
    terminal.pairing()
    kept = "SELECT count(*) FROM till_pairings WHERE terminal_id = $1"
    assert fetchval(stack, kept, terminal.id) == 1
    with phone(stack) as browser:
        assert pair(browser, pairing["url"]).status_code == 410


def test_a_link_expires_ten_minutes_after_it_is_made(stack: Stack, merchant: Merchant) -> None:
    """The answer's expiry is the stored one, ten minutes after the link was made."""
    terminal = Terminal(stack, merchant)
    pairing = terminal.pairing()
    row = fetch(
        stack,
        "SELECT created_at, expires_at FROM till_pairings WHERE terminal_id = $1",
        terminal.id,
    )[0]
    assert datetime.fromisoformat(pairing["expires_at"]) == row["expires_at"]
    assert row["expires_at"] - row["created_at"] == timedelta(minutes=10)


def test_another_merchants_terminal_is_not_found(stack: Stack, merchant: Merchant) -> None:
    """Pairing, listing the devices of or revoking a device of another merchant's terminal is
    404, worded as for a terminal nobody holds."""
    terminal = Terminal(stack, merchant)
    with phone(stack) as browser:
        assert pair(browser, terminal.pairing()["url"]).status_code == 303
    device = merchant.get(f"/v1/terminals/{terminal.id}/devices").json()["items"][0]["id"]
    stranger = stack.new_merchant("Stranger")
    for response in (
        stranger.post(f"/v1/terminals/{terminal.id}/pairings", {}),
        stranger.get(f"/v1/terminals/{terminal.id}/devices"),
        stranger.post(f"/v1/terminals/{terminal.id}/devices/{device}/revoke", {}),
    ):
        assert (response.status_code, reason(response)) == (404, "not_found")
    nobody = stranger.post("/v1/terminals/999999999/pairings", {})
    assert nobody.json()["detail"] == "No terminal 999999999 in this account."
    assert (
        merchant.get(f"/v1/terminals/{terminal.id}/devices").json()["items"][0]["revoked_at"]
        is None
    )


def test_pairing_needs_the_merchants_key(stack: Stack, merchant: Merchant) -> None:
    """Without an API key, pairing and the device list answer 401."""
    terminal = Terminal(stack, merchant)
    for response in (
        httpx.post(f"{stack.base_url}/v1/terminals/{terminal.id}/pairings"),
        httpx.get(f"{stack.base_url}/v1/terminals/{terminal.id}/devices"),
    ):
        assert (response.status_code, reason(response)) == (401, "unauthorized")


def test_a_revoked_phone_is_refused_within_seconds(stack: Stack, merchant: Merchant) -> None:
    """Revoked, the phone's cookie is refused by the exchange at once and the access token it
    already holds is refused at the till within seconds; another phone of the same terminal
    goes on scanning."""
    terminal = Terminal(stack, merchant)
    codes = iter(merchant.codes(terminal.campaign, 4))
    with phone(stack) as revoked, phone(stack) as kept:
        assert pair(revoked, terminal.pairing()["url"]).status_code == 303
        assert pair(kept, terminal.pairing()["url"]).status_code == 303
        token, other = access_token(revoked), access_token(kept)
        assert redeem(stack, token, next(codes)).status_code == 200
        devices = merchant.get(f"/v1/terminals/{terminal.id}/devices").json()["items"]
        oldest = devices[-1]["id"]
        path = f"/v1/terminals/{terminal.id}/devices/{oldest}/revoke"
        first = merchant.post(path, {})
        assert first.status_code == 200 and first.json()["revoked_at"] is not None
        assert merchant.post(path, {}).json() == first.json()
        assert revoked.post("/till/token", headers=EXCHANGE).status_code == 401

        code = next(codes)
        # /v1/check consumes nothing: the code is still there for the other phone.
        eventually(lambda: till(stack, "/v1/check", token, {"code": code}).status_code == 401, 5)
        assert redeem(stack, token, code).status_code == 401
        assert redeem(stack, other, code).status_code == 200


def test_a_link_posted_from_another_site_pairs_nothing(stack: Stack, merchant: Merchant) -> None:
    """A form on another site posting a pairing link (to make a cashier's phone a stranger's
    till) is refused, and the link stays usable for its own page."""
    terminal = Terminal(stack, merchant)
    pairing = terminal.pairing()
    path = urlsplit(pairing["url"]).path
    with phone(stack) as browser:
        forged = browser.post(path, headers={"Origin": "https://evil.example"})
        assert (forged.status_code, reason(forged)) == (403, "forbidden")
        cross = browser.post(path, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        assert "set-cookie" not in forged.headers
        assert pair(browser, pairing["url"]).status_code == 303


def test_the_exchange_wants_its_header_and_a_paired_cookie(stack: Stack) -> None:
    """Without the till's header the exchange is 403 (a cross-site form cannot send it); with
    no cookie or a made-up one, 401."""
    with phone(stack) as browser:
        assert browser.post("/till/token").status_code == 403
        assert browser.post("/till/token", headers=EXCHANGE).status_code == 401
        browser.cookies.set("qrloop_till", "qrl_dev_madeup", path="/till")
        assert browser.post("/till/token", headers=EXCHANGE).status_code == 401


def test_the_till_page_runs_only_its_own_script(stack: Stack) -> None:
    """The page carries its script inline, and its policy allows exactly that script's hash,
    the camera for itself only, and no framing."""
    page = httpx.get(stack.base_url + "/till/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["permissions-policy"].startswith("camera=(self)")
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(scripts) == 1 and "getUserMedia" in scripts[0]
    assert "script-src 'sha256-" in policy and "http" not in policy


def test_a_rotated_secret_leaves_the_phone_paired(stack: Stack, merchant: Merchant) -> None:
    """Rotating the terminal's secret ends the token the phone holds (it was minted under the
    old secret's time), but the phone's cookie still buys a new one that scans."""
    terminal = Terminal(stack, merchant)
    code = merchant.codes(terminal.campaign, 1)[0]
    with phone(stack) as browser:
        assert pair(browser, terminal.pairing()["url"]).status_code == 303
        token = access_token(browser)
        assert merchant.post(f"/v1/terminals/{terminal.id}/rotate-secret", {}).status_code == 200
        eventually(lambda: till(stack, "/v1/check", token, {"code": code}).status_code == 401, 5)
        assert redeem(stack, access_token(browser), code).status_code == 200
