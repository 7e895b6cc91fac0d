"""The merchant dashboard in real Chromium: logging in through the form, a forged form
refused, each role's pages, a campaign created and codes ordered, the order's progress bar
followed live to 100%, and the PDF downloaded; on a phone (360 px) and a desktop."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from dashboard_support import PASSWORD, Person, invited, owner_of
from support import CHROMIUM, CHROMIUM_FLAGS, Merchant, Stack, csp_refusals

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium on the PATH (Debian: apt-get install chromium)"
)
PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Merchant:
    return stack.new_merchant("Cone & Co")


@pytest.fixture(scope="module")
def team(stack: Stack, shop: Merchant) -> dict[str, str]:
    """The shop's people by role, each with PASSWORD set: email by role."""
    owner = owner_of(shop)
    emails = {"owner": shop.owner_email}
    for role in ("manager", "viewer"):
        email = f"{role}@cone.example.com"
        link = invited(owner, email, role)
        assert Person(stack).set_password(link).status_code == 303
        emails[role] = email
    return emails


def log_in(page: Any, stack: Stack, email: str) -> None:
    page.goto(stack.base_url + "/dashboard/")
    assert page.url.startswith(stack.base_url + "/dashboard/login?next=")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(stack.base_url + "/dashboard/campaigns")


def fits(page: Any, width: int) -> None:
    """Nothing on the page is wider than the screen (no sideways scrolling)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def nav_labels(page: Any) -> list[str]:
    return [label.strip() for label in page.locator(".top nav a").all_inner_texts()]


def test_a_manager_creates_a_campaign_orders_codes_and_downloads_the_pdf_on_a_phone(
    stack: Stack, team: dict[str, str], browser: Any, tmp_path: Path
) -> None:
    """At 360 px: log in through the form, create a campaign, order 30 codes, watch the
    order's progress bar reach 100% (server-sent events, the page's own hashed script), then
    download the PDF, a real PDF of pages; the pages never scroll sideways, and the
    Content-Security-Policy refuses nothing they do."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, accept_downloads=True)
    page = context.new_page()
    refused = csp_refusals(page)
    try:
        log_in(page, stack, team["manager"])
        fits(page, PHONE["width"])
        page.click("text=New campaign")
        page.fill("#name", "Cone after 22:00")
        page.fill("#face_value", "5.50")
        page.fill("#currency", "CNY")
        page.fill("#timezone", "Asia/Shanghai")
        page.fill("#hours", "22:00-02:00")
        fits(page, PHONE["width"])
        page.screenshot(path=tmp_path / "1-new-campaign.png", full_page=True)
        page.click("text=Create campaign")
        page.wait_for_url(re.compile(r".*/dashboard/campaigns/\d+$"))
        assert "5.50" in page.locator(".facts").inner_text()
        page.fill("#quantity", "30")
        page.click("text=Order codes")
        page.wait_for_url(re.compile(r".*/dashboard/orders/\d+$"))
        page.wait_for_selector("[data-label]:has-text('100% · 30 of 30 codes')", timeout=60_000)
        assert page.locator("progress").get_attribute("value") == "30"
        assert page.locator("[data-status]").inner_text() == "done"
        page.wait_for_selector("a[data-format=pdf]", state="visible")
        fits(page, PHONE["width"])
        page.screenshot(path=tmp_path / "2-order-done.png", full_page=True)
        with page.expect_download() as started:
            page.click("a[data-format=pdf]")
        download = started.value
        assert download.suggested_filename.endswith(".pdf")
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        pdf = saved.read_bytes()
        assert pdf.startswith(b"%PDF-")
        assert len(re.findall(rb"/Type /Page\b", pdf)) >= 1
        assert refused == []
    finally:
        context.close()


def test_a_form_without_its_csrf_token_is_refused_and_a_foreign_site_cannot_post(
    stack: Stack, team: dict[str, str], browser: Any
) -> None:
    """Our own form with its CSRF token stripped on the way is answered 403 and creates
    nothing; a form on another site posting to the dashboard carries no session (SameSite)
    and is answered 401."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        log_in(page, stack, team["owner"])
        page.goto(stack.base_url + "/dashboard/campaigns/new")

        def strip_token(route: Any) -> None:
            fields = [
                kv for kv in parse_qsl(route.request.post_data or "") if kv[0] != "csrf_token"
            ]
            route.continue_(post_data=urlencode(fields))

        page.route("**/dashboard/campaigns", strip_token)
        page.fill("#name", "Forged")
        page.fill("#face_value", "1")
        with page.expect_response("**/dashboard/campaigns") as answered:
            page.click("text=Create campaign")
        assert answered.value.status == 403
        assert "CSRF token is missing or wrong" in page.content()
        page.unroute("**/dashboard/campaigns")

        page.goto("about:blank")
        page.set_content(
            f'<form method="post" action="{stack.base_url}/dashboard/campaigns">'
            '<input name="name" value="Forged"><input name="face_value" value="1">'
            '<input name="currency" value="CNY"><button>go</button></form>'
        )
        with page.expect_response("**/dashboard/campaigns") as answered:
            page.click("button")
        assert answered.value.status == 401
        page.goto(stack.base_url + "/dashboard/campaigns")
        assert "Forged" not in page.locator("main").inner_text()
    finally:
        context.close()


@pytest.mark.parametrize(
    ("role", "sections", "can_create"),
    [
        (
            "owner",
            [
                "Campaigns",
                "Redemptions",
                "Settlements",
                "Stores",
                "Agreements",
                "Webhooks",
                "API keys",
                "Users",
            ],
            True,
        ),
        ("manager", ["Campaigns", "Redemptions", "Settlements", "Stores", "Agreements"], True),
        ("viewer", ["Campaigns", "Redemptions", "Settlements"], False),
    ],
)
def test_each_role_sees_its_own_sections(
    stack: Stack,
    team: dict[str, str],
    browser: Any,
    role: str,
    sections: list[str],
    can_create: bool,
) -> None:
    """On a desktop: the navigation shows each role only its sections, a viewer has no "New
    campaign", and a section outside the role answers 403 (a page saying so) when typed in."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        log_in(page, stack, team[role])
        assert nav_labels(page) == sections
        assert (page.locator("text=New campaign").count() == 1) is can_create
        users = page.goto(stack.base_url + "/dashboard/users")
        assert users is not None
        assert users.status == (200 if role == "owner" else 403)
        if role != "owner":  # the refusal, as a page of the dashboard
            assert page.locator("h1").inner_text() == "Forbidden"
        fits(page, DESKTOP["width"])
    finally:
        context.close()


def test_logging_out_ends_the_session(stack: Stack, team: dict[str, str], browser: Any) -> None:
    """After "Log out", the dashboard sends the browser back to the login page."""
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        log_in(page, stack, team["viewer"])
        page.click("text=Log out")
        page.wait_for_url(stack.base_url + "/dashboard/login")
        page.goto(stack.base_url + "/dashboard/campaigns")
        assert "/dashboard/login?next=" in page.url
    finally:
        context.close()
