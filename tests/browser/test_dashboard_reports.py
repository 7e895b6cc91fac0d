"""The dashboard's redemptions page in real Chromium: a merchant's owner signs in, sees the
codes its till redeemed as bars in the server-drawn charts and as rows in the table, on a
phone and on a desktop, and downloads them as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from support import CHROMIUM, CHROMIUM_FLAGS, Stack, csp_refusals, eventually, redeem

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium on the PATH (Debian: apt-get install chromium)"
)

PASSWORD = "correct horse battery staple"
REDEEMED = 3


def test_owner_signs_in_sees_the_charts_and_table_and_downloads_the_csv(
    stack: Stack, tmp_path: Path
) -> None:
    """Three codes redeemed at the merchant's till: after signing in, the redemptions page
    draws three redemptions in the current hour's bar and three at the store's bar, lists the
    three rows, fits a 360 px screen without sideways scrolling, and its CSV download holds
    the three redemptions. Nothing on the page is refused by its Content-Security-Policy."""
    merchant = stack.new_merchant("Cone & Co")
    store = merchant.created("/v1/stores", {"name": "Flagship"})["id"]
    token = merchant.terminal_token(store, "Till 1")
    campaign = merchant.campaign(name="Free cone")
    for code in merchant.codes(campaign, REDEEMED):
        assert redeem(stack, token, code).status_code == 200
    # The page shows settled redemptions: wait for the worker, not for a clock.
    eventually(lambda: len(merchant.get("/v1/redemptions").json()["items"]) == REDEEMED, within=30)

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 360, "height": 780}, accept_downloads=True)
            refused = csp_refusals(page)
            page.goto(merchant.owner_invite_url)
            page.fill("#password", PASSWORD)
            page.fill("#again", PASSWORD)
            page.click("button[type=submit]")
            page.goto(f"{stack.base_url}/dashboard/redemptions")
            if page.locator("#email").count():  # sent to the login page first
                page.fill("#email", merchant.owner_email)
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url("**/dashboard/**")
                page.goto(f"{stack.base_url}/dashboard/redemptions")
            assert page.locator("h1").inner_text() == "Redemptions"

            hours = page.locator("svg#by-time rect.bar")
            assert hours.count() >= 24
            values = [
                int(hours.nth(i).get_attribute("data-value") or 0) for i in range(hours.count())
            ]
            assert sum(values) == REDEEMED
            busiest = hours.nth(values.index(max(values))).bounding_box()
            assert busiest is not None and busiest["height"] > 0
            stores = page.locator("svg#by-store rect.bar")
            assert stores.count() == 1
            assert stores.first.get_attribute("data-value") == str(REDEEMED)
            # The charts are images with accessible names, as a screen reader finds them.
            assert page.get_by_role("img", name="Redemptions by store").count() == 1
            assert page.get_by_role("img", name="Redemptions by hour (UTC)").count() == 1

            rows = page.locator("#redemptions tbody tr")
            assert rows.count() == REDEEMED
            assert "Flagship" in rows.first.inner_text()
            chart = page.locator("svg#by-time").bounding_box()
            assert chart is not None and chart["x"] + chart["width"] <= 360
            page.screenshot(path=tmp_path / "redemptions-360.png", full_page=True)

            with page.expect_download() as download_info:
                page.click("text=Download CSV")
            download = download_info.value
            assert download.suggested_filename == "redemptions.csv"
            text = Path(download.path()).read_text()
            downloaded = list(csv.DictReader(io.StringIO(text)))
            assert len(downloaded) == REDEEMED
            assert {row["store_name"] for row in downloaded} == {"Flagship"}

            page.set_viewport_size({"width": 1280, "height": 900})
            page.reload()
            assert page.locator("svg#by-time rect.bar").count() == hours.count()
            page.screenshot(path=tmp_path / "redemptions-1280.png", full_page=True)
            assert refused == []
        finally:
            browser.close()
