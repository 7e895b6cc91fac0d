"""Screenshots of qrloop's pages at a phone's and a desktop's width, into this folder.

    .venv/bin/python docs/screenshots/make.py [NAME...]

Starts `qrloop serve` on embedded PostgreSQL and Valkey (as the tests do), seeds a campaign,
and drives Debian's Chromium through each shot of SHOTS: open its URL with its language, take
its steps, then save NAME-360.png and NAME-1280.png (the whole page). A new page is one more
Shot: a name, the URL it opens (made from the seeded Demo) and the steps taken there.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402

from consumer_pages import Shop, ask_for_code, claim, open_shop  # noqa: E402
from dashboard_support import PASSWORD, demo_merchant  # noqa: E402
from qrloop.embedded import EmbeddedServers  # noqa: E402
from support import CHROMIUM, CHROMIUM_FLAGS, Stores, serving  # noqa: E402

WIDTHS = (360, 1280)
ACCEPT_LANGUAGE = {"en": "en-GB,en;q=0.9", "zh-CN": "zh-CN,zh;q=0.9"}


@dataclass
class Demo:
    """What the shots show: a seeded shop, and a fresh claim link for each shot that asks."""

    shop: Shop
    used: count[int]
    base_url: str
    dashboard: dict[str, str]  # the dashboard's demo merchant: owner's email, page paths

    def claim_link(self) -> str:
        return self.shop.links[next(self.used)]

    def pairing_link(self) -> str:
        """A one-time link that makes a phone the shop's till (each shot pairs its own)."""
        merchant = self.shop.merchant
        store = merchant.created("/v1/stores", {"name": "Counter"})["id"]
        till = merchant.created("/v1/terminals", {"store_id": store, "name": "Phone"})["id"]
        url: str = merchant.created(f"/v1/terminals/{till}/pairings", {})["url"]
        return url


def _nothing(page: Any, demo: Demo) -> None:
    """The page as it opens."""


def _ask(page: Any, demo: Demo) -> None:
    ask_for_code(page, "ana@example.com")


def _claim(page: Any, demo: Demo) -> None:
    claim(page, demo.shop.stack, f"shot-{next(demo.used)}@example.com")


def _till(typed: int, code: int = -1) -> Callable[[Any, Demo], None]:
    """Pair the phone through the link's page, then type the shop's code number `code` (from
    the end: the claim shots take them from the start) `typed` times (once: the green answer;
    twice: the red 'Already used' one)."""

    def steps(page: Any, demo: Demo) -> None:
        page.click("button[type=submit]")
        page.wait_for_url("**/till/")
        page.wait_for_selector("#start", state="visible")
        for attempt in range(typed):
            if attempt:
                page.click("#next")
            page.fill("#code", demo.shop.codes[code])
            page.click("#typed button[type=submit]")
            page.wait_for_selector("#answer.ok" if attempt == 0 else "#answer.no")

    return steps


def _dashboard_login(demo: Demo) -> str:
    return demo.base_url + "/dashboard/login"


def _dashboard(name: str) -> Callable[[Any, Demo], None]:
    """Log in as the demo merchant's owner, then open its page `name`."""

    def steps(page: Any, demo: Demo) -> None:
        page.fill("#email", demo.dashboard["email"])
        page.fill("#password", PASSWORD)
        page.click("form.stack button[type=submit]")
        page.wait_for_url(demo.base_url + "/dashboard/campaigns")
        page.goto(demo.base_url + demo.dashboard[name])
        if name == "order":
            page.wait_for_selector("a[data-format=pdf]", state="visible")

    return steps


@dataclass(frozen=True)
class Shot:
    name: str
    language: str
    url: Callable[[Demo], str]
    steps: Callable[[Any, Demo], None] = _nothing


SHOTS = [
    Shot("claim-en", "en", Demo.claim_link),
    Shot("claim-zh-CN", "zh-CN", Demo.claim_link),
    Shot("claim-code-asked-zh-CN", "zh-CN", Demo.claim_link, _ask),
    Shot("claimed-en", "en", Demo.claim_link, _claim),
    Shot("claimed-zh-CN", "zh-CN", Demo.claim_link, _claim),
    Shot("pool-en", "en", lambda demo: demo.shop.pool_url),
    Shot("pool-zh-CN", "zh-CN", lambda demo: demo.shop.pool_url),
    Shot("till-pair", "en", Demo.pairing_link),
    Shot("till-ready", "en", Demo.pairing_link, _till(0)),
    Shot("till-accepted", "en", Demo.pairing_link, _till(1)),
    Shot("till-already-used", "en", Demo.pairing_link, _till(2, code=-2)),
    Shot("dashboard-login", "en", _dashboard_login),
    *(
        Shot(f"dashboard-{name}", "en", _dashboard_login, _dashboard(name))
        for name in (
            "campaigns",
            "campaign",
            "order",
            "users",
            "redemptions",
            "settlements",
            "terminal",
        )
    ),
]


def take(shots: list[Shot], demo: Demo, browser: Any) -> None:
    for shot in shots:
        context = browser.new_context(
            viewport={"width": WIDTHS[0], "height": 800},
            extra_http_headers={"Accept-Language": ACCEPT_LANGUAGE[shot.language]},
        )
        page = context.new_page()
        page.goto(shot.url(demo))
        shot.steps(page, demo)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            path = HERE / f"{shot.name}-{width}.png"
            page.screenshot(path=path, full_page=True)
            print(path.relative_to(HERE.parents[1]))
        context.close()


def main(names: list[str]) -> None:
    shots = [shot for shot in SHOTS if not names or shot.name in names]
    assert CHROMIUM is not None, "needs Chromium (Debian: apt-get install chromium)"
    with (
        tempfile.TemporaryDirectory(prefix="qrloop-shots-") as folder,
        EmbeddedServers(Path(folder) / "stores") as urls,
        serving(Stores(urls.database_url, urls.redis_url), Path(folder) / "serve") as stack,
    ):
        demo = Demo(open_shop(stack), count(), stack.base_url, demo_merchant(stack))
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            take(shots, demo, browser)
            browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])
