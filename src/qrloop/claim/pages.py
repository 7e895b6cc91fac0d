"""HTML for the consumer pages, from the templates in qrloop/web/templates."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from string import Template

from qrloop.web.headers import csp_hash, page_headers

# Minor units per currency where ISO 4217 says other than two.
_EXPONENTS = {
    **dict.fromkeys(("JPY", "KRW", "VND", "CLP", "ISK", "UGX", "PYG", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
STATE_TEXT = {
    "valid": "Ready to use",
    "unclaimed": "Available",
    "used": "Used",
    "voided": "Voided by the issuer",
    "expired": "Expired",
    "not_yet_valid": "Not valid yet",
    "taken": "Already claimed",
    "empty": "All gone",
}


@cache
def _template(name: str) -> Template:
    return Template(resources.files("qrloop.web").joinpath("templates", name).read_text())


def exponent_of(currency: str) -> int:
    """Digits after the point in the currency's major unit (ISO 4217's minor unit)."""
    return _EXPONENTS.get(currency, 2)


def money(minor_units: int, currency: str) -> str:
    exponent = exponent_of(currency)
    if exponent == 0:
        return f"{minor_units:,} {currency}"
    return f"{minor_units / 10**exponent:,.{exponent}f} {currency}"


def validity(
    valid_from: datetime | None, valid_until: datetime | None, hours: str | None, timezone: str
) -> str:
    parts = []
    if valid_from is not None:
        parts.append(f"from {valid_from:%Y-%m-%d %H:%M} UTC")
    if valid_until is not None:
        parts.append(f"until {valid_until:%Y-%m-%d %H:%M} UTC")
    if hours:
        parts.append(f"daily {hours} ({timezone})")
    return "Valid " + ", ".join(parts) if parts else "No expiry date"


def page(title: str, template: str, **fields: str) -> str:
    """A whole page: `fields` are escaped, except those named `content` (already HTML)."""
    safe = {key: value if key == "content" else escape(value) for key, value in fields.items()}
    body = _template(template).substitute(safe)
    return _template("base.html").substitute(title=escape(title), body=body)


def identifier_form(action: str, button: str, note: str, error: str | None = None) -> str:
    return (
        f'<form method="post" action="{escape(action)}">{_error(error)}'
        '<label for="identifier">Your phone number or email</label>'
        '<input id="identifier" name="identifier" required autocomplete="email tel"'
        ' placeholder="+86 138 0000 0000 or you@example.com">'
        f'<button type="submit">{escape(button)}</button>'
        f'<p class="muted">{escape(note)}</p>'
        "</form>"
    )


def code_form(action: str, hint: str, error: str | None = None) -> str:
    """Where the one-time code sent to `hint` (the masked recipient) is typed."""
    return (
        f'<form method="post" action="{escape(action)}">{_error(error)}'
        f'<label for="code">The 6-digit code we sent to {escape(hint)}</label>'
        '<input id="code" name="code" required inputmode="numeric" autocomplete="one-time-code"'
        ' pattern="[0-9 ]{6,8}" maxlength="8">'
        '<button type="submit">Confirm</button>'
        '<p class="muted">It is valid for 10 minutes. No code? Reload this page later and ask'
        " again.</p>"
        "</form>"
    )


def _error(error: str | None) -> str:
    return f'<p class="error">{escape(error)}</p>' if error else ""


def claimed_code(svg: str, typed: str) -> str:
    """The QR, its typed form, and the script that keeps the state badge live."""
    return (
        f'<div class="qr" role="img" aria-label="QR code">{svg}</div>'
        f'<p class="typed" id="typed">{escape(typed)}</p>'
        '<p class="muted">Show this at the till. If the scan fails, read out the code above.</p>'
        f"<script>{STATE_SCRIPT}</script>"
    )


def _js_names() -> str:
    pairs = ",".join(f"{key!r}:{value!r}" for key, value in STATE_TEXT.items())
    return "{" + pairs + "}"


# Polls `<this page>/state`: the same text on every page, so one hash in the CSP allows it.
STATE_SCRIPT = (
    "const names=" + _js_names() + ";const badge=document.getElementById('state');"
    "setInterval(async()=>{try{const r=await fetch(location.pathname+'/state',"
    "{cache:'no-store'});if(!r.ok)return;const s=(await r.json()).state;"
    "badge.textContent=names[s]||s;badge.className='state '+s;}catch(e){}},5000);"
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
    )
