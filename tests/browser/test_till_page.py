"""The till page in real Chromium on a 360 px phone screen, its camera a fake one that films a
real code: paired through the pairing link, it scans, answers green, then red on a second scan
of the same code; typed entry and the reversal button work without the camera."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from frames import qr_image, write_y4m
from support import CHROMIUM, CHROMIUM_FLAGS, Merchant, Stack, csp_refusals

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium on the PATH (Debian: apt-get install chromium)"
)
PHONE = {"width": 360, "height": 740}


class Shop:
    def __init__(self, stack: Stack) -> None:
        self.merchant: Merchant = stack.new_merchant("Till Cones")
        store = self.merchant.created("/v1/stores", {"name": "Main"})["id"]
        body = {"store_id": store, "name": "Phone"}
        self.terminal_id = self.merchant.created("/v1/terminals", body)["id"]
        self.filmed, self.typed = self.merchant.codes(self.merchant.campaign(), 2)

    def pairing_url(self) -> str:
        url: str = self.merchant.created(f"/v1/terminals/{self.terminal_id}/pairings", {})["url"]
        return url


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Shop:
    return Shop(stack)


@pytest.fixture(scope="module")
def chromium(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium whose camera films the QR of `shop.filmed`, held 30 cm away on a counter."""
    video = tmp_path_factory.mktemp("camera") / "code.y4m"
    write_y4m(video, qr_image(shop.filmed, (640, 480)))
    camera = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS + camera)
        try:
            yield browser
        finally:
            browser.close()


def paired_page(chromium: Any, shop: Shop) -> Any:
    """A fresh phone (its own cookies) paired through the link's page, on the till page."""
    page = chromium.new_context(viewport=PHONE, device_scale_factor=2).new_page()
    page.goto(shop.pairing_url())
    assert "Phone" in page.locator("main").inner_text()
    page.click("button[type=submit]")
    page.wait_for_url("**/till/")
    page.wait_for_selector("#start", state="visible")
    assert page.locator("#who").inner_text() == "Phone · Main"
    return page


def fits_the_screen(page: Any) -> bool:
    width: int = page.evaluate("document.documentElement.scrollWidth")
    return width <= PHONE["width"]


def test_the_camera_scans_green_then_red_on_a_second_scan(
    chromium: Any, shop: Shop, tmp_path: Path
) -> None:
    """Paired by its link, the page starts the (fake) camera; the server decodes its frames and
    the code is accepted: full-screen green with the face value. After 'Next scan' the same
    code in view is refused: full-screen red, 'Already used', naming the store and the time.
    Nothing the page does is refused by its Content-Security-Policy, and it fits 360 px."""
    page = paired_page(chromium, shop)
    refused = csp_refusals(page)
    page.screenshot(path=tmp_path / "1-ready.png")
    page.click("#start")

    page.wait_for_selector("#answer.ok", timeout=20_000)
    assert page.locator("#verdict").inner_text() == "Accepted"
    assert "5.00" in page.locator("#value").inner_text()
    assert page.locator("#reverse").is_visible()
    page.screenshot(path=tmp_path / "2-accepted.png")

    page.click("#next")
    page.wait_for_selector("#answer.no", timeout=20_000)
    assert page.locator("#verdict").inner_text() == "Already used"
    reason = page.locator("#reason").inner_text()
    assert reason.startswith("Used at Main at ") and reason.endswith(".")
    page.screenshot(path=tmp_path / "3-already-used.png")
    assert fits_the_screen(page)
    assert refused == []
    page.context.close()


def test_typed_entry_and_the_reversal_button(chromium: Any, shop: Shop, tmp_path: Path) -> None:
    """Without the camera, a typed code (lower case, dashes) is accepted; 'Reverse' undoes it
    within the campaign's window, so the same code typed again is accepted again; a damaged
    code is refused in words."""
    page = paired_page(chromium, shop)
    refused = csp_refusals(page)
    grouped = "-".join(shop.typed[i : i + 5] for i in range(0, len(shop.typed), 5)).lower()

    page.fill("#code", grouped)
    page.click("#typed button[type=submit]")
    page.wait_for_selector("#answer.ok")
    page.click("#reverse")
    page.wait_for_selector("#answer.undone")
    assert page.locator("#verdict").inner_text() == "Reversed"
    page.click("#next")

    page.fill("#code", shop.typed)
    page.click("#typed button[type=submit]")
    page.wait_for_selector("#answer.ok")
    page.click("#next")

    page.fill("#code", shop.typed[:-3] + "AAA")
    page.click("#typed button[type=submit]")
    page.wait_for_selector("#answer.no")
    assert page.locator("#verdict").inner_text() == "Not a valid code"
    assert page.locator("#reason").inner_text() == "This is not a valid code."
    page.screenshot(path=tmp_path / "4-invalid.png")
    assert fits_the_screen(page)
    assert refused == []
    page.context.close()
