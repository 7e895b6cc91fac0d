"""The consumer pages' language over HTTP: chosen by Accept-Language, switched by `?lang=`,
remembered in a cookie, and the one-time code sent in the page's language."""

from __future__ import annotations

import re

import httpx
import pytest

from consumer_pages import Shop, open_shop
from support import Stack, fetch

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-US,en;q=0.9"}


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Shop:
    return open_shop(stack, quantity=6)


def _lang(page: httpx.Response) -> str:
    found = re.search(r'<html lang="([^"]+)">', page.text)
    assert found is not None
    return found.group(1)


def test_the_header_chooses_and_every_page_varies_on_it(shop: Shop) -> None:
    """Accept-Language picks the page's language (its `<html lang>`, its texts, its money);
    every consumer page says it varies on Accept-Language and Cookie, and offers the other
    language by a link to the same page."""
    with httpx.Client(timeout=30) as browser:
        chinese = browser.get(shop.links[0], headers=ZH)
        english = browser.get(shop.links[0], headers=EN)
        pool = browser.get(shop.pool_url, headers=ZH)
    path = shop.links[0].removeprefix(shop.stack.base_url)
    assert (_lang(chinese), _lang(english), _lang(pool)) == ("zh-CN", "en", "zh-CN")
    assert "发送验证码" in chinese.text and "¥5.00" in chinese.text
    assert "Send me a code" in english.text and "CN¥5.00" in english.text
    assert "剩余 6 / 6" in pool.text
    assert f'href="{path}?lang=en"' in chinese.text
    assert f'href="{path}?lang=zh-CN"' in english.text
    for page in (chinese, english, pool):
        assert page.headers["vary"] == "Accept-Language, Cookie"
        assert "set-cookie" not in page.headers


def test_the_switch_is_remembered_and_the_code_goes_in_the_pages_language(shop: Shop) -> None:
    """A browser asking for English follows the switch to Chinese: the page answers in
    Chinese and sets a site-wide, HttpOnly, SameSite cookie, so its next pages (the pool's
    too) are Chinese without `?lang=`, and the one-time code it asks for is sent in Chinese.
    A `?lang=` that is not one of ours changes nothing, sets nothing and is never echoed."""
    with httpx.Client(timeout=30, headers=EN) as browser:
        for bogus_lang in ("fr", '"><script>alert(1)</script>', "zh-cn"):
            bogus = browser.get(shop.links[1], params={"lang": bogus_lang})
            assert _lang(bogus) == "en"
            assert "set-cookie" not in bogus.headers
            assert bogus_lang not in bogus.text
        switched = browser.get(shop.links[1], params={"lang": "zh-CN"})
        cookie = switched.headers["set-cookie"]
        assert _lang(switched) == "zh-CN"
        assert cookie.startswith("qrloop_lang=zh-CN;")
        assert {"Path=/", "HttpOnly", "SameSite=lax"} <= {p.strip() for p in cookie.split(";")}
        assert _lang(browser.get(shop.links[1])) == "zh-CN"
        assert _lang(browser.get(shop.pool_url)) == "zh-CN"
        asked = browser.post(f"{shop.links[1]}/claim", data={"identifier": "lu@example.com"})
        assert asked.status_code == 303
        refused = browser.post(f"{shop.links[1]}/claim", data={"identifier": "call me"})
    assert refused.status_code == 400
    assert "请输入有效的手机号或邮箱地址。" in refused.text
    sent = fetch(
        shop.stack,
        "SELECT language, body FROM consumer_messages WHERE recipient = 'lu@example.com'",
    )
    assert [row["language"] for row in sent] == ["zh-CN"]
    assert "验证码是" in sent[0]["body"]
