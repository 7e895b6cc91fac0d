"""Every text of the consumer pages, in English and Simplified Chinese, and the page's language.

A catalogue of our own, one dict per language as a translator reads them: two languages and a
few dozen texts need no gettext toolchain (no compiled .mo to keep beside its .po, nothing to
build before the wheel carries it), mypy checks the code that uses them, and a unit test holds
both dicts to the same keys and placeholders. Numbers, money and dates are formatted by Babel
(CLDR), which knows each locale's symbols and patterns (`pages.py`).
"""

# Chinese text takes full-width commas, colons and brackets, which ruff would read as look-alikes.
# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qrloop.errors import Problem, Reason
from qrloop.messages.catalogue import LANGUAGES, Language, language_of

COOKIE = "qrloop_lang"
# Each language's name in itself: the switch offers the other one by the name its readers know.
NAMES: dict[Language, str] = {"en": "English", "zh-CN": "中文"}

EN: dict[str, str] = {
    "state.valid": "Ready to use",
    "state.unclaimed": "Available",
    "state.used": "Used",
    "state.voided": "Voided by the issuer",
    "state.expired": "Expired",
    "state.not_yet_valid": "Not valid yet",
    "state.taken": "Already claimed",
    "state.empty": "All gone",
    "language": "Language",
    "identifier.label": "Your phone number or email",
    "identifier.placeholder": "138 0000 0000 or ana@qq.com",
    "identifier.send_code": "Send me a code",
    "identifier.claim": "Claim",
    "identifier.send_links": "Send me my links",
    "identifier.otp_note": "We send a one-time code to it, and keep only a keyed fingerprint"
    " of it.",
    "identifier.plain_note": "We keep only a keyed fingerprint of it, to recognise you again.",
    "code.label": "The 6-digit code we sent to {hint}",
    "code.confirm": "Confirm",
    "code.note": "It is valid for 10 minutes. No code? Reload this page later and ask again.",
    "claimed.qr": "QR code",
    "claimed.note": "Show this at the till. If the scan fails, read out the code above.",
    "taken.note": "This offer has already been claimed. If it was you, on another device, enter"
    " the same phone number or email: we will send you a one-time code.",
    "pool.remaining": "{left} of {size} left",
    "pool.limit": "You already have {count} codes of this offer, the most one person may take."
    " We can send their links to your phone or email.",
    "pool.links_sent": "If {hint} holds codes of this offer, we have sent it their links.",
    "validity.none": "No expiry date",
    "validity.from": "from {when}",
    "validity.until": "until {when}",
    "validity.daily": "daily {hours}",
    "validity.join": ", ",
    "validity.valid": "Valid {parts} ({timezone})",
    "error.email": "That does not look like an email address.",
    "error.identifier": "Give a valid phone number or an email address.",
    "error.otp_expired": "This code has expired; ask for a new one.",
    "error.otp_wrong": "That code is not right; {left} tries left.",
    "error.otp_too_many": "Too many wrong codes; ask for a new one.",
    "error.taken": "Someone else has already claimed this code.",
    "error.voided": "The issuer has voided this code.",
    "error.used": "This code has already been used.",
    "error.paused": "Claims are paused for a moment; try again shortly.",
    "error.all_gone": "All codes have been handed out.",
    "cap.person": "We have sent this phone number or email all the codes we may this hour;"
    " try again later.",
    "cap.link": "Too many codes were asked for on this link in the last hour; try again later.",
    "cap.pool": "Too many codes were asked for on this offer's page in the last hour;"
    " try again later.",
    "cap.address": "Too many codes were asked for from your network in the last hour;"
    " try again later.",
}

ZH_CN: dict[str, str] = {
    "state.valid": "可以使用",
    "state.unclaimed": "可领取",
    "state.used": "已使用",
    "state.voided": "已被发券方作废",
    "state.expired": "已过期",
    "state.not_yet_valid": "尚未生效",
    "state.taken": "已被领取",
    "state.empty": "已领完",
    "language": "语言",
    "identifier.label": "您的手机号或邮箱",
    "identifier.placeholder": "138 0000 0000 或 ana@qq.com",
    "identifier.send_code": "发送验证码",
    "identifier.claim": "领取",
    "identifier.send_links": "把链接发给我",
    "identifier.otp_note": "我们会向它发送一次性验证码，并且只保存它的加密指纹。",
    "identifier.plain_note": "我们只保存它的加密指纹，用来再次认出您。",
    "code.label": "我们发送到 {hint} 的 6 位验证码",
    "code.confirm": "确认",
    "code.note": "验证码 10 分钟内有效。没有收到？请稍后刷新本页再试。",
    "claimed.qr": "二维码",
    "claimed.note": "请在收银台出示。如果扫码失败，请读出上面的券码。",
    "taken.note": "此优惠已被领取。如果是您在另一台设备上领取的，请输入同一个手机号或邮箱，"
    "我们会给您发送一次性验证码。",
    "pool.remaining": "剩余 {left} / {size}",
    "pool.limit": "您已领取此优惠的 {count} 张券码，已达每人上限。我们可以把它们的链接发送到"
    "您的手机或邮箱。",
    "pool.links_sent": "如果 {hint} 领取过此优惠的券码，我们已把链接发送过去。",
    "validity.none": "长期有效",
    "validity.from": "{when} 起",
    "validity.until": "至 {when}",
    "validity.daily": "每天 {hours}",
    "validity.join": "，",
    "validity.valid": "有效期：{parts}（{timezone}）",
    "error.email": "这看起来不像邮箱地址。",
    "error.identifier": "请输入有效的手机号或邮箱地址。",
    "error.otp_expired": "验证码已过期，请重新获取。",
    "error.otp_wrong": "验证码不正确，还可以再试 {left} 次。",
    "error.otp_too_many": "错误次数过多，请重新获取验证码。",
    "error.taken": "这张券码已被他人领取。",
    "error.voided": "发券方已作废这张券码。",
    "error.used": "这张券码已被使用。",
    "error.paused": "领取暂停片刻，请稍后再试。",
    "error.all_gone": "券码已全部发完。",
    "cap.person": "这个手机号或邮箱在一小时内收到的验证码已达上限，请稍后再试。",
    "cap.link": "这个链接在一小时内请求的验证码过多，请稍后再试。",
    "cap.pool": "这个优惠页面在一小时内请求的验证码过多，请稍后再试。",
    "cap.address": "您的网络在一小时内请求的验证码过多，请稍后再试。",
}

CATALOGUES: dict[Language, dict[str, str]] = {"en": EN, "zh-CN": ZH_CN}


def text(language: Language, key: str, **params: Any) -> str:
    """The text `key` in `language`, its `{placeholders}` filled from `params`."""
    return CATALOGUES[language][key].format(**params)


def chosen(query: str | None) -> Language | None:
    """The language a `?lang=` switch names, if it is one of ours."""
    return next((language for language in LANGUAGES if language == query), None)


def page_language(query: str | None, cookie: str | None, accept_language: str | None) -> Language:
    """The switch just followed (`?lang=`), else the one remembered in the cookie, else the
    browser's preference."""
    return chosen(query) or chosen(cookie) or language_of(accept_language)


class Refusal(Problem):
    """A refusal a consumer page words in its reader's language; `detail`, for the API and the
    logs, is the English text."""

    def __init__(
        self, reason: Reason, key: str, params: Mapping[str, Any] | None = None, **extra: Any
    ) -> None:
        self.key = key
        self.params = dict(params or {})
        super().__init__(reason, text("en", key, **self.params), **extra)

    def worded(self, language: Language) -> str:
        return text(language, self.key, **self.params)


def explain(problem: Problem, language: Language) -> str:
    """What a page says about `problem`: in the reader's language where we word it."""
    return problem.worded(language) if isinstance(problem, Refusal) else problem.detail
