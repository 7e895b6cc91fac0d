"""HTML of the till page (`/till/`) and of the pairing pages, with their security headers."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from html import escape
from importlib import resources

from qrloop.claim.pages import page


def _template(name: str) -> str:
    return resources.files("qrloop.web").joinpath("templates", name).read_text()


@cache
def script() -> str:
    return _template("till.js")


@cache
def till_page() -> str:
    # Not string.Template: the script is full of `$`.
    return _template("till.html").replace("$script", script())


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def till_headers() -> dict[str, str]:
    """Only our own hashed style and script run; they may talk to this server alone; the
    camera is for this page, not for anything framed in it (nothing may be)."""
    found = re.search(r"<style>(.*?)</style>", till_page(), re.DOTALL)
    assert found is not None
    policy = "; ".join(
        (
            "default-src 'none'",
            f"style-src {_csp_hash(found.group(1))}",
            f"script-src {_csp_hash(script())}",
            "connect-src 'self'",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "Permissions-Policy": "camera=(self), microphone=()",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


def pair_offer(terminal_name: str, store_name: str) -> str:
    """The confirmation a phone sees before it spends the pairing link."""
    content = (
        f"<p>This phone becomes the till <strong>{escape(terminal_name)}</strong> of"
        f" <strong>{escape(store_name)}</strong>. The link works once.</p>"
        '<form method="post"><button type="submit">Make this phone a till</button></form>'
    )
    return page("Pair this phone", "till_pair.html", heading="Pair this phone", content=content)


def pair_spent() -> str:
    content = (
        "<p>This pairing link has expired or was already used. Links last ten minutes and work"
        " once: ask for a new pairing QR in the merchant dashboard.</p>"
    )
    return page("Pairing link spent", "till_pair.html", heading="Link expired", content=content)
