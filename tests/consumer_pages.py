"""A campaign whose consumer pages can be shown, and the steps a consumer takes on them in a
real browser: shared by the browser tests and docs/screenshots/make.py."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from support import Merchant, Stack, one_time_code

T = TypeVar("T")

OFFER = "Free cone after 22:00"


@dataclass
class Shop:
    """A merchant's campaign with claim links, a till to redeem at and a pool link."""

    stack: Stack
    merchant: Merchant
    till_token: str
    codes: list[str]
    links: list[str]
    pool_url: str


def open_shop(stack: Stack, quantity: int = 12) -> Shop:
    """A CNY campaign valid for a year (in Shanghai time), `quantity` claim links and a pool
    (one code a person, one-time codes) over another order of the same size."""
    merchant = stack.new_merchant("Cone & Co")
    store = merchant.created("/v1/stores", {"name": "Main"})["id"]
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=365)
    campaign = merchant.campaign(
        name=OFFER, valid_until=until.isoformat(), timezone="Asia/Shanghai"
    )
    order = merchant.order(campaign, quantity)
    rows = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv").text.splitlines()[1:]
    pooled = merchant.order(campaign, quantity)
    pool = merchant.created(
        f"/v1/campaigns/{campaign}/pools", {"order_id": pooled["id"], "per_consumer": 1}
    )
    return Shop(
        stack=stack,
        merchant=merchant,
        till_token=merchant.terminal_token(store),
        codes=[row.split(",")[0] for row in rows],
        links=[row.split(",")[2] for row in rows],
        pool_url=pool["url"],
    )


def off_loop(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a thread of its own: the database helpers run an event loop of
    their own (asyncio.run), which Playwright's sync API, running one, would refuse."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(function, *args).result()


def sent_code(stack: Stack, recipient: str) -> str:
    """The latest one-time code queued for `recipient`."""
    return off_loop(one_time_code, stack, recipient)


def ask_for_code(page: Any, identifier: str) -> None:
    """Type a phone number or email and ask for a one-time code: the page then asks for it."""
    page.fill("#identifier", identifier)
    page.click("button[type=submit]")
    page.wait_for_selector("#code")


def type_code(page: Any, code: str) -> None:
    page.fill("#code", code)
    page.click("button[type=submit]")


def claim(page: Any, stack: Stack, email: str) -> None:
    """On an open claim page: the whole claim, up to the QR."""
    ask_for_code(page, email)
    type_code(page, sent_code(stack, email))
    page.wait_for_selector(".qr svg")
