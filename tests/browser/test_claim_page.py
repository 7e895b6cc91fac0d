"""The consumer's claim page in real Chromium, on a phone-sized screen."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from support import CHROMIUM, CHROMIUM_FLAGS, Stack, csp_refusals, redeem

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium on the PATH (Debian: apt-get install chromium)"
)


def test_consumer_claims_and_the_shown_qr_scans_then_turns_used(
    stack: Stack, tmp_path: Path
) -> None:
    """A consumer opens the link, types an email, types the one-time code sent to it, sees a
    QR that decodes to the code, and the page's badge turns to 'Used' by itself once the till
    redeems it: the page's hashed script runs under its Content-Security-Policy, and nothing
    the page does is refused by it."""
    merchant = stack.new_merchant()
    store = merchant.created("/v1/stores", {"name": "Main"})["id"]
    token = merchant.terminal_token(store)
    campaign = merchant.campaign(name="Free cone after 22:00")
    order = merchant.order(campaign, 1)
    row = merchant.get(f"/v1/orders/{order['id']}/codes").text.splitlines()[1].split(",")
    code, claim_url = row[0], row[2]

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            refused = csp_refusals(page)
            page.goto(claim_url)
            assert page.locator("h1").inner_text() == "Free cone after 22:00"
            assert page.locator(".qr").count() == 0
            page.screenshot(path=tmp_path / "1-offer.png", full_page=True)

            page.fill("#identifier", "ana@example.com")
            page.click("button[type=submit]")
            page.wait_for_selector("#code")
            assert page.locator(".qr").count() == 0
            page.screenshot(path=tmp_path / "2-code-asked.png", full_page=True)

            # As a developer would: the development sender's latest message.
            sent = stack.cli("outbox", "tail", "-n", "1").stdout
            assert sent.startswith("ana@example.com  ")
            code_sent = re.search(r"\b(\d{6})\b", sent)
            assert code_sent is not None
            page.fill("#code", code_sent.group(1))
            page.click("button[type=submit]")
            page.wait_for_selector(".qr svg")
            shot = page.screenshot(path=tmp_path / "3-claimed.png", full_page=True)
            found = zxingcpp.read_barcodes(
                Image.open(io.BytesIO(shot)), formats=zxingcpp.BarcodeFormat.QRCode
            )
            assert [result.text for result in found] == [code]

            assert redeem(stack, token, code).status_code == 200
            # A selector, not a script: the page's CSP refuses any script but its own.
            page.wait_for_selector("#state.used", timeout=15_000)
            assert page.locator("#state").inner_text() == "Used"
            page.screenshot(path=tmp_path / "4-used.png", full_page=True)
            assert refused == []
        finally:
            browser.close()
