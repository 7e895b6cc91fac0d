"""A person at the merchant dashboard, for the tests: an HTTP client with its own cookie jar
that reads CSRF tokens off the pages it is given, as a browser's forms would send them."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx

from support import Merchant, Stack, eventually, redeem

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token on the page"
    return unescape(found.group(1))


class Person:
    """One browser: its cookies, and the CSRF token of the last page it read."""

    def __init__(self, stack: Stack, address: str | None = None) -> None:
        # With the stack trusting 127.0.0.1 as a proxy, `address` is the client's address
        # the login limit counts (X-Forwarded-For).
        headers = {"X-Forwarded-For": address} if address else {}
        self.client = httpx.Client(base_url=stack.base_url, headers=headers, timeout=30)
        self.csrf = ""

    def get(self, path: str, follow: bool = False, **params: Any) -> httpx.Response:
        response = self.client.get(path, params=params or None, follow_redirects=follow)
        if "csrf_token" in response.text:
            self.csrf = csrf_of(response.text)
        return response

    def post(
        self, path: str, fields: dict[str, str] | None = None, csrf: bool = True
    ) -> httpx.Response:
        """A form post with this page's CSRF token (unless `csrf` is False, or the fields
        name one)."""
        data = {**({"csrf_token": self.csrf} if csrf else {}), **(fields or {})}
        response = self.client.post(path, data=data)
        if "csrf_token" in response.text:
            self.csrf = csrf_of(response.text)
        return response

    def set_password(self, invite_url: str, password: str = PASSWORD) -> httpx.Response:
        path = httpx.URL(invite_url).path
        page = self.get(path)
        assert page.status_code == 200, page.text
        return self.post(path, {"password": password, "again": password})

    def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        """Log in as a person would, through the form; once in, the landing page is read (and
        its CSRF token kept)."""
        self.get("/dashboard/login")
        answer = self.post("/dashboard/login", {"email": email, "password": password})
        if answer.status_code == 303:
            self.get(answer.headers["location"], follow=True)
        return answer

    def close(self) -> None:
        self.client.close()


def owner_of(merchant: Merchant) -> Person:
    """The merchant's owner, password set and logged in."""
    person = Person(merchant.stack)
    assert person.set_password(merchant.owner_invite_url).status_code == 303
    assert person.log_in(merchant.owner_email).status_code == 303
    return person


def invited(owner: Person, email: str, role: str) -> str:
    """The owner invites `email` as `role`: the one-time link shown."""
    owner.get("/dashboard/users")
    answer = owner.post("/dashboard/users", {"email": email, "role": role})
    assert answer.status_code == 201, answer.text
    found = re.search(r'id="invite-url">([^<]+)<', answer.text)
    assert found is not None
    return unescape(found.group(1))


def member(owner: Person, stack: Stack, email: str, role: str) -> Person:
    """A person the owner invited as `role`, password set and logged in."""
    person = Person(stack)
    assert person.set_password(invited(owner, email, role)).status_code == 303
    assert person.log_in(email).status_code == 303
    return person


def demo_merchant(stack: Stack) -> dict[str, str]:
    """A merchant to show (docs/screenshots): three campaigns (active, paused, ended), a done
    order and a team of three. Its owner's email and the paths of its main pages, by name."""
    merchant = stack.new_merchant("Cone & Co", "ana@cone.example.com")
    owner = owner_of(merchant)
    campaigns = []
    for fields in (
        {"name": "Free cone after 22:00", "face_value": "5.00", "hours": "22:00-02:00"},
        {"name": "Mid-autumn mooncake voucher", "face_value": "100.00"},
        {"name": "Summer coffee refill", "face_value": "12.00", "valid_until": "2026-09-01T00:00"},
    ):
        owner.get("/dashboard/campaigns/new")
        made = owner.post(
            "/dashboard/campaigns", {"currency": "CNY", "timezone": "Asia/Shanghai", **fields}
        )
        campaigns.append(made.headers["location"])
    owner.get(campaigns[1])
    owner.post(campaigns[1] + "/pause")
    owner.get(campaigns[0])
    placed = owner.post(campaigns[0] + "/orders", {"quantity": "2000", "idempotency_key": "a"})
    order = placed.headers["location"]
    eventually(lambda: "data-status>done<" in owner.get(order).text, 60)
    for email, role in (("mei@cone.example.com", "manager"), ("li@cone.example.com", "viewer")):
        Person(stack).set_password(invited(owner, email, role))
    owner.close()
    return {
        "email": merchant.owner_email,
        "campaigns": "/dashboard/campaigns",
        "campaign": campaigns[0],
        "order": order,
        "users": "/dashboard/users",
        **_demo_redemptions(merchant),
    }


def _demo_redemptions(merchant: Merchant) -> dict[str, str]:
    """Two stores' tills redeem a coffee campaign's codes (settled before this returns): the
    report pages' paths, by name."""
    stack = merchant.stack
    campaign = merchant.campaign(name="Weekday coffee", face_value=1200)
    codes = iter(merchant.codes(campaign, 24))
    terminals = []
    for store_name, redeemed in (("Flagship, Nanjing Road", 15), ("Harbour Road", 9)):
        store = merchant.created("/v1/stores", {"name": store_name})["id"]
        terminal, token = merchant.terminal(store, "Till 1")
        terminals.append(terminal)
        for _ in range(redeemed):
            assert redeem(stack, token, next(codes)).status_code == 200
    eventually(lambda: len(merchant.get("/v1/redemptions").json()["items"]) == 24, 60)
    return {
        "redemptions": "/dashboard/redemptions",
        "settlements": "/dashboard/settlements",
        "terminal": f"/dashboard/terminals/{terminals[0]}",
    }
