"""The API's documentation pages in real Chromium with every request off this machine refused:
each renders its list of operations from the package's own assets."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support import CHROMIUM, CHROMIUM_FLAGS, Stack, csp_refusals

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium on the PATH (Debian: apt-get install chromium)"
)
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# An operation's summary, as each page lists it, and where the page draws its operation list.
SUMMARY = "Verify and consume a code"
PAGES = {
    "/schema": "[role=menuitem], .menu-content li",
    "/schema/redoc": "[role=menuitem], .menu-content li",
    "/schema/swagger": ".opblock-summary-description",
}


@pytest.mark.parametrize(("path", "operation_list"), PAGES.items(), ids=list(PAGES))
def test_the_page_lists_the_operations_with_outside_requests_blocked(
    stack: Stack, tmp_path: Path, path: str, operation_list: str
) -> None:
    """The page, with any request to a host other than loopback aborted, shows the till's
    redeem operation by its summary in its operation list, without a script error; it asked
    for nothing outside, its Content-Security-Policy refused nothing of its own, and every
    script and style sheet it loaded came from this server."""
    outside: list[str] = []
    loaded: list[str] = []

    def route(request: playwright.Route) -> None:
        if urlsplit(request.request.url).hostname in LOOPBACK | {None}:
            loaded.append(request.request.url)
            request.continue_()
        else:
            outside.append(request.request.url)
            request.abort()

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            refused = csp_refusals(page)
            page.route("**/*", route)
            page.goto(stack.base_url + path)
            summary = page.locator(operation_list).filter(has_text=SUMMARY).first
            summary.wait_for(state="visible", timeout=30_000)
            page.screenshot(path=tmp_path / "page.png")
        finally:
            browser.close()

    assert outside == []
    assert errors == []
    # The pages' policy refuses only what they name outside: ReDoc's logo.
    assert all(REDOC_LOGO in text for text in refused), refused
    assets = [url for url in loaded if url.endswith((".js", ".css"))]
    assert assets and all(urlsplit(url).path.startswith("/static/docs/") for url in assets)


def test_swagger_authorize_sends_the_merchant_key(stack: Stack, tmp_path: Path) -> None:
    """In Swagger UI, a person authorizes with a merchant API key under its security scheme,
    tries `GET /v1/api-keys`, and gets 200 with the merchant's keys: the operation's security
    requirement sends the key, and the page's policy lets it call this server."""
    merchant = stack.new_merchant("Swagger shop")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(stack.base_url + "/schema/swagger")
            page.click("button.authorize")
            scheme = page.locator(".auth-container").filter(has_text="merchantApiKey")
            scheme.locator("input").fill(merchant.api_key)
            scheme.locator("button.authorize").click()
            page.click("button.btn-done")
            operation = page.locator("#operations-accounts-V1ApiKeysListApiKeys")
            operation.locator(".opblock-summary").click()
            operation.locator("button.try-out__btn").click()
            operation.locator("button.execute").click()
            status = operation.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for(state="visible", timeout=30_000)
            body = operation.locator(".live-responses-table .microlight").first.inner_text()
            page.screenshot(path=tmp_path / "tried.png", full_page=True)
            assert status.inner_text().strip() == "200"
            assert '"label": "initial"' in body
        finally:
            browser.close()
