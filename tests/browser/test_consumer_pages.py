"""The consumer pages in both languages, in real Chromium at a phone's and a desktop's width:
a claim in Chinese end to end, axe-core's accessibility rules, the typed code's line breaks
and the inputs' placeholders."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest

from consumer_pages import Shop, ask_for_code, claim, off_loop, open_shop, sent_code, type_code
from support import CHROMIUM, CHROMIUM_FLAGS, Stack, csp_refusals, fetch, redeem

playwright = pytest.importorskip("playwright.sync_api")
axe_playwright = pytest.importorskip("axe_playwright_python.sync_playwright")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium on the PATH (Debian: apt-get install chromium)"
)
WIDTHS = (360, 1280)
HEADERS = {"en": "en-GB,en;q=0.9", "zh-CN": "zh-CN,zh;q=0.9,en;q=0.5"}
CASES = [(language, width) for language in HEADERS for width in WIDTHS]
IDS = [f"{language}-{width}px" for language, width in CASES]
# What axe-core checks: WCAG 2.x A and AA (contrast, labels, names, language) and its
# best practices (landmarks, one main heading).
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Shop:
    return open_shop(stack)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


_links = count()


def _next_link(shop: Shop) -> tuple[str, str]:
    """A claim link no other test of this module has used, and its code."""
    index = next(_links)
    return shop.links[index], shop.codes[index]


def _page(browser: Any, language: str, width: int) -> Any:
    context = browser.new_context(
        viewport={"width": width, "height": 800},
        extra_http_headers={"Accept-Language": HEADERS[language]},
    )
    return context.new_page()


def _violations(page: Any) -> list[str]:
    """axe-core's violations on the page as it stands: rule, impact and the elements."""
    results = axe_playwright.Axe().run(page, options=AXE_OPTIONS)
    return [
        f"{violation['id']} ({violation['impact']}): "
        + "; ".join(node["html"] for node in violation["nodes"])
        for violation in results.response["violations"]
    ]


def test_a_claim_in_chinese_from_offer_to_used(browser: Any, shop: Shop) -> None:
    """A browser asking for zh-CN gets the page in Chinese (`<html lang="zh-CN">`, yuan as
    '¥5.00'); the switch shows it in English, and the choice is remembered on reload; switched
    back, the consumer claims in Chinese: the one-time code is sent in Chinese, the claimed
    page shows the QR with a Chinese badge, which turns to '已使用' by itself once the till
    redeems the code. The CSP refuses nothing."""
    link, code = _next_link(shop)
    page = _page(browser, "zh-CN", 390)
    refused = csp_refusals(page)
    page.goto(link)
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert page.inner_text("button[type=submit]") == "发送验证码"
    assert page.inner_text(".value") == "¥5.00"
    assert "有效期" in page.inner_text(".card")

    page.click("a[hreflang=en]")
    assert page.get_attribute("html", "lang") == "en"
    assert page.inner_text("button[type=submit]") == "Send me a code"
    assert page.inner_text(".value") == "CN¥5.00"
    page.goto(link)
    assert page.get_attribute("html", "lang") == "en", "the switch's choice is remembered"

    page.click("a[hreflang=zh-CN]")
    ask_for_code(page, "mei@example.com")
    assert "我们发送到 m•••@example.com 的 6 位验证码" in page.inner_text("label[for=code]")
    sent = off_loop(
        fetch,
        shop.stack,
        "SELECT language, body FROM consumer_messages WHERE recipient = 'mei@example.com'",
    )
    assert [row["language"] for row in sent] == ["zh-CN"]
    assert "验证码是" in sent[0]["body"]

    type_code(page, "000000")
    assert page.inner_text(".error") == "验证码不正确，还可以再试 4 次。"  # noqa: RUF001
    type_code(page, sent_code(shop.stack, "mei@example.com"))
    page.wait_for_selector(".qr svg")
    assert page.inner_text("#state") == "可以使用"
    assert redeem(shop.stack, shop.till_token, code).status_code == 200
    page.wait_for_selector("#state.used", timeout=15_000)
    assert page.inner_text("#state") == "已使用"
    assert refused == []
    page.context.close()


@pytest.mark.parametrize(("language", "width"), CASES, ids=IDS)
def test_every_state_passes_axe(browser: Any, shop: Shop, language: str, width: int) -> None:
    """axe-core finds no violation (contrast, labels, names, language, landmarks) on the
    claim page's every state (offer, wrong one-time code, one-time code asked, claimed with
    its QR, used) and on the pool page, in this language at this width."""
    link, code = _next_link(shop)
    email = f"axe-{language.lower()}-{width}@example.com"
    page = _page(browser, language, width)
    found: dict[str, list[str]] = {}
    page.goto(link)
    found["offer"] = _violations(page)
    ask_for_code(page, email)
    found["code asked"] = _violations(page)
    type_code(page, "000000")
    page.wait_for_selector(".error")
    found["wrong code"] = _violations(page)
    claim_code = sent_code(shop.stack, email)
    type_code(page, claim_code)
    page.wait_for_selector(".qr svg")
    found["claimed"] = _violations(page)
    assert redeem(shop.stack, shop.till_token, code).status_code == 200
    page.reload()
    page.wait_for_selector("#state.used")
    found["used"] = _violations(page)
    page.goto(shop.pool_url)
    found["pool"] = _violations(page)
    page.context.close()
    assert {state: rules for state, rules in found.items() if rules} == {}


def _line_boxes(page: Any) -> list[dict[str, Any]]:
    """Each group of the typed code: its text and the boxes it is drawn in."""
    boxes: list[dict[str, Any]] = page.eval_on_selector_all(
        "#typed span",
        """spans => spans.map(span => ({
            text: span.textContent,
            tops: [...span.getClientRects()].map(rect => Math.round(rect.top)),
            right: span.getBoundingClientRect().right,
        }))""",
    )
    return boxes


@pytest.mark.parametrize("language", list(HEADERS))
def test_the_typed_code_breaks_only_between_its_groups(
    browser: Any, shop: Shop, language: str
) -> None:
    """At 360 px the typed code (under the QR) takes several lines, and each group of it is
    drawn in exactly one line box: a line breaks only between groups; nothing runs past the
    screen, and the groups still read as the whole code."""
    link, _ = _next_link(shop)
    page = _page(browser, language, 360)
    page.goto(link)
    claim(page, shop.stack, f"wrap-{language.lower()}@example.com")
    typed = page.get_attribute("#typed data", "value")
    groups = _line_boxes(page)
    page.context.close()
    assert "".join(group["text"] for group in groups) == typed
    assert [len(group["tops"]) for group in groups] == [1] * len(groups)
    assert len({group["tops"][0] for group in groups}) > 1, "the code should wrap at 360 px"
    assert max(group["right"] for group in groups) <= 360


@pytest.mark.parametrize(("language", "width"), CASES, ids=IDS)
def test_placeholders_are_not_cut_off(browser: Any, shop: Shop, language: str, width: int) -> None:
    """Every input's placeholder, typed into it, fits its box (scrollWidth ≤ clientWidth) on
    the claim page and the pool page, in this language at this width."""
    link, _ = _next_link(shop)
    page = _page(browser, language, width)
    measured: list[dict[str, Any]] = []
    for url in (link, shop.pool_url):
        page.goto(url)
        measured += page.eval_on_selector_all(
            "input[placeholder]",
            """inputs => inputs.map(input => {
                input.value = input.placeholder;
                const fits = {placeholder: input.placeholder, scroll: input.scrollWidth,
                              client: input.clientWidth};
                input.value = "";
                return fits;
            })""",
        )
    page.context.close()
    assert len(measured) == 2
    assert [m for m in measured if m["scroll"] > m["client"]] == []
