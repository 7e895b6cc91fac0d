"""The dashboard's main pages at 360 px and 1280 px, as PNGs in docs/screenshots/: a running
`qrloop serve` on embedded stores of its own, a merchant with campaigns, an order and a team,
and Chromium logged in as its owner.

    .venv/bin/python tests/browser/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # the tests' own stack and dashboard helpers

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from dashboard_support import PASSWORD, Person, invited, owner_of  # noqa: E402
from qrloop.embedded import EmbeddedServers  # noqa: E402
from support import CHROMIUM, CHROMIUM_FLAGS, Stack, Stores, eventually, serving  # noqa: E402

WIDTHS = {360: 780, 1280: 800}  # width: height


def seed(stack: Stack) -> dict[str, str]:
    """A merchant with three campaigns (active, paused, ended), a done order and a team:
    the pages to shoot, by name."""
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
            "/dashboard/campaigns",
            {"currency": "CNY", "timezone": "Asia/Shanghai", **fields},
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
        "campaigns": "/dashboard/campaigns",
        "campaign": campaigns[0],
        "order": order,
        "users": "/dashboard/users",
        "email": merchant.owner_email,
    }


def shoot(page: Page, stack: Stack, pages: dict[str, str], width: int, out: Path) -> None:
    page.goto(stack.base_url + "/dashboard/login")
    page.screenshot(path=out / f"login-{width}.png", full_page=True)
    page.fill("#email", pages["email"])
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(stack.base_url + "/dashboard/campaigns")
    for name in ("campaigns", "campaign", "order", "users"):
        page.goto(stack.base_url + pages[name])
        if name == "order":
            page.wait_for_selector("a[data-format=pdf]", state="visible")
        page.screenshot(path=out / f"{name}-{width}.png", full_page=True)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--out", type=Path, default=TESTS.parent / "docs" / "screenshots")
    args = options.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qrloop-shots-") as scratch:
        folder = Path(scratch)
        with (
            EmbeddedServers(folder / "stores") as urls,
            serving(Stores(urls.database_url, urls.redis_url), folder / "serve") as stack,
        ):
            pages = seed(stack)
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                for width, height in WIDTHS.items():
                    context = browser.new_context(viewport={"width": width, "height": height})
                    shoot(context.new_page(), stack, pages, width, args.out)
                    context.close()
                browser.close()
    print(*sorted(path.name for path in args.out.glob("*.png")), sep="\n")


if __name__ == "__main__":
    main()
