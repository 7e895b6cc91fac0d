"""HTML for the consumer pages, from the templates in qrloop/web/templates."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from functools import cache
from html import escape
from importlib import resources
from string import Template
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_skeleton, format_time
from babel.numbers import format_currency, format_decimal

from qrloop.claim.texts import NAMES, text
from qrloop.messages.catalogue import LANGUAGES, Language
from qrloop.web.headers import csp_hash, page_headers

# Minor units per currency where ISO 4217 says other than two (face values are in them).
_EXPONENTS = {
    **dict.fromkeys(("JPY", "KRW", "VND", "CLP", "ISK", "UGX", "PYG", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
STATES = (
    "valid",
    "unclaimed",
    "used",
    "voided",
    "expired",
    "not_yet_valid",
    "taken",
    "empty",
)
_HTML = ("content", "state_names")  # fields made here as HTML, their texts already escaped
_BABEL_LOCALES: dict[Language, Locale] = {
    "en": Locale.parse("en"),
    "zh-CN": Locale.parse("zh_CN"),
}


@cache
def _template(name: str) -> Template:
    return Template(resources.files("qrloop.web").joinpath("templates", name).read_text())


def exponent_of(currency: str) -> int:
    """Digits after the point in the currency's major unit (ISO 4217's minor unit)."""
    return _EXPONENTS.get(currency, 2)


def money(minor_units: int, currency: str, language: Language) -> str:
    """The face value as the locale writes money ('CN¥5.00' in English, '¥5.00' in Chinese),
    with the currency's ISO 4217 decimals (CLDR's display digits differ for a few)."""
    exponent = exponent_of(currency)
    locale = _BABEL_LOCALES[language]
    standard = locale.currency_formats["standard"].pattern
    pattern = re.sub(r"\.0+", "." + "0" * exponent if exponent else "", standard)
    amount = Decimal(minor_units).scaleb(-exponent)
    return format_currency(amount, currency, format=pattern, locale=locale, currency_digits=False)


def number(value: int, language: Language) -> str:
    return format_decimal(value, locale=_BABEL_LOCALES[language])


def validity(
    valid_from: datetime | None,
    valid_until: datetime | None,
    hours: str | None,
    timezone: str,
    language: Language,
) -> str:
    """When the code may be redeemed, in the campaign's time zone, as the locale writes dates."""
    zone = _zone(timezone)
    parts = []
    if valid_from is not None:
        parts.append(text(language, "validity.from", when=_when(valid_from, zone, language)))
    if valid_until is not None:
        parts.append(text(language, "validity.until", when=_when(valid_until, zone, language)))
    if hours:
        parts.append(text(language, "validity.daily", hours=hours.replace("-", "\u2013")))
    if not parts:
        return text(language, "validity.none")
    joined = text(language, "validity.join").join(parts)
    return text(language, "validity.valid", parts=joined, timezone=timezone)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return ZoneInfo("UTC")


def _when(moment: datetime, zone: ZoneInfo, language: Language) -> str:
    locale = _BABEL_LOCALES[language]
    day = format_skeleton("yMMMd", moment, tzinfo=zone, locale=locale)
    return f"{day} {format_time(moment, 'HH:mm', tzinfo=zone, locale=locale)}"


def page(language: Language, path: str, title: str, template: str, **fields: str) -> str:
    """A whole page at `path` in `language`: `fields` are escaped, except the HTML ones."""
    safe = {key: value if key in _HTML else escape(value) for key, value in fields.items()}
    body = _template(template).substitute(safe)
    return _template("base.html").substitute(
        lang=language,
        title=escape(title),
        switch=_switch(language, path),
        body=body,
    )


def _switch(language: Language, path: str) -> str:
    """Links to this page in the other languages, each named in its own language."""
    links = "".join(
        f'<a href="{escape(path)}?lang={other}" lang="{other}" hreflang="{other}">'
        f"{NAMES[other]}</a>"
        for other in LANGUAGES
        if other != language
    )
    return f'<nav class="lang" aria-label="{escape(text(language, "language"))}">{links}</nav>'


def identifier_form(
    language: Language, action: str, button: str, note: str, error: str | None = None
) -> str:
    """Where a phone number or email is typed; `button` and `note` are text keys."""
    return (
        f'<form method="post" action="{escape(action)}">{_error(error)}'
        f'<label for="identifier">{escape(text(language, "identifier.label"))}</label>'
        '<input id="identifier" name="identifier" required autocomplete="email"'
        f' placeholder="{escape(text(language, "identifier.placeholder"))}">'
        f'<button type="submit">{escape(text(language, button))}</button>'
        f'<p class="muted">{escape(text(language, note))}</p>'
        "</form>"
    )


def code_form(language: Language, action: str, hint: str, error: str | None = None) -> str:
    """Where the one-time code sent to `hint` (the masked recipient) is typed."""
    return (
        f'<form method="post" action="{escape(action)}">{_error(error)}'
        f'<label for="code">{escape(text(language, "code.label", hint=hint))}</label>'
        '<input id="code" name="code" required inputmode="numeric" autocomplete="one-time-code"'
        ' pattern="[0-9 ]{6,8}" maxlength="8">'
        f'<button type="submit">{escape(text(language, "code.confirm"))}</button>'
        f'<p class="muted">{escape(text(language, "code.note"))}</p>'
        "</form>"
    )


def paragraph(words: str, css_class: str | None = None) -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{escape(words)}</p>"


def _error(error: str | None) -> str:
    return paragraph(error, "error") if error else ""


def state_names(language: Language) -> str:
    """The badge's names of every state, as data attributes the polling script reads."""
    return " ".join(
        f'data-{state}="{escape(text(language, f"state.{state}"))}"' for state in STATES
    )


def claimed_code(language: Language, svg: str, typed: str) -> str:
    """The QR, its typed form, and the script that keeps the state badge live."""
    return (
        f'<div class="qr" role="img" aria-label="{escape(text(language, "claimed.qr"))}">'
        f"{svg}</div>"
        f'<p class="typed" id="typed">{typed_groups(typed)}</p>'
        f"{paragraph(text(language, 'claimed.note'), 'muted')}"
        f"<script>{STATE_SCRIPT}</script>"
    )


def typed_groups(typed: str) -> str:
    """The typed code, breakable only between its groups: each group (with its dash) is one
    unbreakable span, and a <wbr> between them is the only break opportunity (a dash before
    a digit is none by itself). The whole code stays in `value`, as it is copied."""
    groups = typed.split("-")
    spans = "<wbr>".join(
        f"<span>{escape(group)}{'-' if last < len(groups) - 1 else ''}</span>"
        for last, group in enumerate(groups)
    )
    return f'<data value="{escape(typed)}">{spans}</data>'


# Polls `<this page>/state`: the same text on every page and in every language (the badge
# carries its names), so one hash in the CSP allows it.
STATE_SCRIPT = (
    "const badge=document.getElementById('state');"
    "setInterval(async()=>{try{const r=await fetch(location.pathname+'/state',"
    "{cache:'no-store'});if(!r.ok)return;const s=(await r.json()).state;"
    "badge.textContent=badge.dataset[s]||s;badge.className='state '+s;}catch(e){}},5000);"
)


def _inline_style() -> str:
    found = re.search(r"<style>(.*?)</style>", _template("base.html").template, re.DOTALL)
    assert found is not None
    return found.group(1)


@cache
def security_headers() -> dict[str, str]:
    """Every consumer page: nothing runs or loads but our own hashed style and script, no
    framing, no Referer (claim tokens are in the URL), never cached (a page may show a code)."""
    return page_headers(
        style_src=csp_hash(_inline_style()),
        script_src=csp_hash(STATE_SCRIPT),
        referrer="no-referrer",
    ) | {
        # The same URL answers in the language of the header or of the switch's cookie.
        "Vary": "Accept-Language, Cookie",
    }
