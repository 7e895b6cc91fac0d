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


def language_of(accept_language: str | None) -> Language:
    """The browser's first choice: any Chinese gets zh-CN, everything else English."""
    first = (accept_language or "").split(",", 1)[0].strip().lower()
    return "zh-CN" if first.startswith("zh") else "en"


def render(kind: Kind, language: Language, **params: str) -> tuple[str, str]:
    """(subject, body) of a message of `kind` in `language`."""
    subject, body = _TEXTS[kind][language]
    return subject.format(**params), body.format(**params)
