"""The consumer pages' language: which one a request gets, a catalogue complete in both, and
money, dates and the typed code as each locale writes them."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from qrloop.claim import pages, sendcaps, texts
from qrloop.claim.texts import Refusal, explain, page_language
from qrloop.errors import Problem, Reason
from qrloop.messages.catalogue import LANGUAGES, language_of

CLAIM_SOURCES = Path(texts.__file__).parent


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("zh", "zh-CN"),
        ("en-GB,zh-CN;q=0.5", "en"),
        ("en;q=0.3, zh-CN;q=0.9", "zh-CN"),  # order is not preference: q is
        ("fr-FR, de;q=0.9, zh-Hans;q=0.5, en;q=0.4", "zh-CN"),  # first one we have
        ("fr-FR, de;q=0.9", "en"),  # none we have
        ("zh;q=0, en;q=0.1", "en"),  # q=0: not acceptable
        ("zh;q=abc, en;q=0.5", "en"),  # malformed q: dropped
        ("zh;q=2, en;q=0.5", "en"),  # q out of range: dropped
        ("*;q=0.5, zh;q=0.4", "en"),
        ("ZH-cn", "zh-CN"),
        ("zhx, en", "en"),  # a prefix is a whole subtag
        ("", "en"),
        (None, "en"),
    ],
)
def test_accept_language_by_q_values(header: str | None, language: str) -> None:
    """The most preferred language we have wins by q-value, any Chinese being zh-CN; q=0 and
    malformed elements are not preferences; with nothing we have, English."""
    assert language_of(header) == language


def test_the_switch_beats_the_cookie_which_beats_the_header() -> None:
    """`?lang=` (the switch just followed) first, then the remembered cookie, then the
    header; a value that is not one of ours is ignored wherever it comes from."""
    assert page_language("en", "zh-CN", "zh-CN") == "en"
    assert page_language(None, "en", "zh-CN") == "en"
    assert page_language("fr", "zh-CN", "en") == "zh-CN"
    assert page_language("<script>", "xx", "zh-TW") == "zh-CN"
    assert page_language(None, None, None) == "en"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_catalogues_have_every_key_with_the_same_placeholders() -> None:
    """A text missing, empty or with other `{placeholders}` in either language fails here."""
    assert set(texts.CATALOGUES) == set(LANGUAGES)
    keys = set(texts.EN) | set(texts.ZH_CN)
    for language, catalogue in texts.CATALOGUES.items():
        assert keys - set(catalogue) == set(), f"missing in {language}"
        assert [key for key, value in catalogue.items() if not value.strip()] == [], language
    assert [key for key in keys if _fields(texts.EN[key]) != _fields(texts.ZH_CN[key])] == []


def _keys_in_code() -> set[str]:
    """Every text key the consumer pages' code names: quoted keys, and the state and cap keys
    it builds from STATES and sendcaps.Scope."""
    code = "\n".join(
        path.read_text() for path in CLAIM_SOURCES.glob("*.py") if path.stem != "texts"
    )
    prefixes = "|".join({key.split(".")[0] for key in texts.EN if "." in key})
    quoted = set(re.findall(rf"[\"']((?:{prefixes})\.[a-z_]+)[\"']", code))
    quoted -= {name for name in quoted if name.endswith((".html", ".lua"))}  # file names
    built = {f"state.{state}" for state in pages.STATES}
    built |= {f"cap.{scope}" for scope in get_args(sendcaps.Scope)}
    return quoted | built | {"language"}


def test_every_key_the_pages_use_is_in_the_catalogue_and_no_other() -> None:
    """The code names no text the catalogue lacks (a page would fail), and the catalogue
    holds no text nothing shows."""
    assert _keys_in_code() == set(texts.EN)


def test_refusals_keep_english_details_and_are_worded_per_page() -> None:
    """A refusal's `detail` (the API's, the logs') stays English; a page words it in its
    reader's language; another problem's detail is shown as it is."""
    wrong = Refusal(Reason.BAD_REQUEST, "error.otp_wrong", {"left": 3})
    assert wrong.detail == "That code is not right; 3 tries left."
    assert explain(wrong, "zh-CN") == "验证码不正确，还可以再试 3 次。"  # noqa: RUF001
    assert wrong.body()["reason"] == "bad_request"
    plain = Problem(Reason.UNAVAILABLE, "A state store cannot answer right now.")
    assert explain(plain, "zh-CN") == plain.detail


@pytest.mark.parametrize(
    ("minor", "currency", "english", "chinese"),
    [
        (500, "CNY", "CN¥5.00", "¥5.00"),
        (123456, "USD", "$1,234.56", "US$1,234.56"),
        (1000, "JPY", "¥1,000", "JP¥1,000"),
        (1500, "KWD", "KWD1.500", "KWD1.500"),
        (990, "EUR", "€9.90", "€9.90"),
    ],
)
def test_money_as_each_locale_writes_it(
    minor: int, currency: str, english: str, chinese: str
) -> None:
    """Face values (minor units, ISO 4217 decimals) in the locale's symbol and pattern."""
    assert pages.money(minor, currency, "en") == english
    assert pages.money(minor, currency, "zh-CN") == chinese


def test_validity_in_the_campaigns_time_zone_as_each_locale_writes_dates() -> None:
    """Dates are shown in the campaign's time zone, in the locale's words; hours as a range;
    a campaign with no limits says so."""
    start = datetime(2026, 1, 31, 16, 30, tzinfo=UTC)
    until = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
    english = pages.validity(start, until, "10:00-22:00", "Asia/Shanghai", "en")
    chinese = pages.validity(start, until, "10:00-22:00", "Asia/Shanghai", "zh-CN")
    assert english == (
        "Valid from Feb 1, 2026 00:30, until Mar 1, 2026 23:00, daily 10:00\u201322:00"
        " (Asia/Shanghai)"
    )
    assert chinese == (
        "有效期：2026年2月1日 00:30 起，至 2026年3月1日 23:00，每天 10:00\u201322:00"  # noqa: RUF001
        "（Asia/Shanghai）"  # noqa: RUF001
    )
    assert pages.validity(None, None, None, "UTC", "zh-CN") == "长期有效"


def test_the_typed_code_is_one_unbreakable_span_per_group() -> None:
    """Each group keeps its dash in one span, a <wbr> between spans is the only break, and
    the whole code is the element's value."""
    assert pages.typed_groups("AB12C-4G5JC-3") == (
        '<data value="AB12C-4G5JC-3"><span>AB12C-</span><wbr><span>4G5JC-</span><wbr>'
        "<span>3</span></data>"
    )
