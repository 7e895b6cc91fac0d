"""HTML of the till page (`/till/`) and of the pairing pages, with their security headers."""

from __future__ import annotations

import re
from functools import cache
from html import escape
from importlib import resources
from string import Template

from qrloop.web.headers import csp_hash, page_headers


def _template(name: str) -> str:
    return resources.files("qrloop.web").joinpath("templates", name).read_text()


@cache
def script() -> str:
    return _template("till.js")


@cache
def till_page() -> str:
    # Not string.Template: the script is full of `$`.
    return _template("till.html").replace("$script", script())


def _style_of(html: str) -> str:
    found = re.search(r"<style>(.*?)</style>", html, re.DOTALL)
    assert found is not None
    return found.group(1)


def _headers(html: str, script_src: str, form_action: str, referrer: str) -> dict[str, str]:
    """Only the page's own hashed style (and script) run; they talk to this server alone; no
    framing; never cached; the camera for this page alone."""
    return {
        **page_headers(
            style_src=csp_hash(_style_of(html)),
            script_src=script_src,
            referrer=referrer,
            form_action=form_action,
        ),
        "Permissions-Policy": "camera=(self), microphone=()",
    }


@cache
def till_headers() -> dict[str, str]:
    """The till page: its one script, and the camera for itself alone."""
    return _headers(till_page(), csp_hash(script()), "'none'", "no-referrer")


@cache
def pairing_headers() -> dict[str, str]:
    """The pairing pages: no script; the form posts to this server, with its `Origin` (which
    `no-referrer` would make `null`), while the link's token never leaves for another site."""
    return _headers(_template("till_pair.html"), "'none'", "'self'", "same-origin")


def _pairing_page(heading: str, content: str) -> str:
    return Template(_template("till_pair.html")).substitute(
        heading=escape(heading), content=content
    )


def pair_offer(terminal_name: str, store_name: str) -> str:
    """The confirmation a phone sees before it spends the pairing link."""
    return _pairing_page(
        "Pair this phone",
        f"<p>This phone becomes the till <strong>{escape(terminal_name)}</strong> of"
        f" <strong>{escape(store_name)}</strong>. The link works once.</p>"
        '<form method="post"><button type="submit">Make this phone a till</button></form>',
    )


def pair_spent() -> str:
    return _pairing_page(
        "Link expired",
        "<p>This pairing link has expired or was already used. Links last ten minutes and work"
        " once: ask for a new pairing QR in the merchant dashboard.</p>",
    )
