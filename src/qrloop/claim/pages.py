"""HTML for the consumer pages, from the templates in qrloop/web/templates."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from string import Template

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


def money(minor_units: int, currency: str) -> str:
    exponent = _EXPONENTS.get(currency, 2)
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


def claim_form(action: str, error: str | None = None) -> str:
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    return (
        f'<form method="post" action="{escape(action)}">{problem}'
        '<label for="identifier">Your phone number or email</label>'
        '<input id="identifier" name="identifier" required autocomplete="email tel"'
        ' placeholder="+86 138 0000 0000 or you@example.com">'
        '<button type="submit">Claim</button>'
        '<p class="muted">We keep only a keyed fingerprint of it, to recognise you again.</p>'
        "</form>"
    )


def claimed_code(svg: str, typed: str, state_url: str) -> str:
    """The QR, its typed form, and a script that keeps the state badge live."""
    return (
        f'<div class="qr" role="img" aria-label="QR code">{svg}</div>'
        f'<p class="typed" id="typed">{escape(typed)}</p>'
        '<p class="muted">Show this at the till. If the scan fails, read out the code above.</p>'
        "<script>"
        "const names=" + _js_names() + ";"
        f"setInterval(async()=>{{try{{const r=await fetch({state_url!r});"
        "if(!r.ok)return;const s=(await r.json()).state;const b=document.getElementById('state');"
        "b.textContent=names[s]||s;b.className='state '+s;}catch(e){}},5000);"
        "</script>"
    )


def _js_names() -> str:
    pairs = ",".join(f"{key!r}:{value!r}" for key, value in STATE_TEXT.items())
    return "{" + pairs + "}"
