"""The texts of consumer messages, in English and Simplified Chinese."""

# Chinese text takes full-width commas and colons, which ruff would read as look-alikes.
# ruff: noqa: RUF001

from __future__ import annotations

from typing import Literal

Language = Literal["en", "zh-CN"]
Kind = Literal["otp", "links"]

# kind → language → (subject, body); bodies are str.format templates.
_TEXTS: dict[Kind, dict[Language, tuple[str, str]]] = {
    "otp": {
        "en": (
            "Your code: {code}",
            "Your code is {code}. It is valid for 10 minutes. Do not share it: whoever has it"
            " can take your offer.",
        ),
        "zh-CN": (
            "您的验证码：{code}",
            "您的验证码是 {code}，10 分钟内有效。请勿告诉他人：得到验证码的人可以领走您的优惠。",
        ),
    },
    "links": {
        "en": ("Your codes for {offer}", "The codes you hold for {offer}:\n{links}"),
        "zh-CN": ("您的{offer}券码", "您领取的{offer}券码：\n{links}"),
    },
}


LANGUAGES: tuple[Language, ...] = ("en", "zh-CN")


def language_of(accept_language: str | None) -> Language:
    """The browser's most preferred language we have, by `Accept-Language` q-values (RFC 9110
    §12.5.4): any Chinese gets zh-CN, English or `*` English; a q of 0 refuses that language;
    others are skipped; nothing we have gets English."""
    ranked = sorted(_ranges(accept_language or ""), key=lambda pair: -pair[1])  # stable: order ties
    for tag, quality in ranked:
        if quality <= 0:
            continue
        if tag == "zh" or tag.startswith("zh-"):
            return "zh-CN"
        if tag in ("en", "*") or tag.startswith("en-"):
            return "en"
    return "en"


def _ranges(header: str) -> list[tuple[str, float]]:
    """(language range, q) of each element; an element with a malformed q is dropped."""
    found = []
    for element in header.split(","):
        tag, _, params = element.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
        if tag.strip() and 0 <= quality <= 1:
            found.append((tag.strip().lower(), quality))
    return found


def render(kind: Kind, language: Language, **params: str) -> tuple[str, str]:
    """(subject, body) of a message of `kind` in `language`."""
    subject, body = _TEXTS[kind][language]
    return subject.format(**params), body.format(**params)
