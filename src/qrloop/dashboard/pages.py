"""Rendering dashboard pages: Jinja2 templates under qrloop/web/templates/dashboard, one
layout with the navigation, one stylesheet and one script of our own, and the headers every
page is sent with.

Why Jinja2 (the engine behind Litestar's templates) rather than the consumer pages'
`string.Template`: the dashboard is many pages, written by several hands, sharing one layout
(inheritance), with lists and forms (loops, macros); Jinja2 escapes every value by default,
where hand-written HTML must remember to. The environment is ours rather than the framework's
template config, so a page's response, security headers and CSRF token are made in one place.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import MediaType, Response
from litestar.datastructures import Cookie

from qrloop.claim.pages import money
from qrloop.dashboard import nav
from qrloop.dashboard.auth import CSRF_FIELD, Viewer
from qrloop.web.headers import csp_hash, page_headers

STATIC = resources.files("qrloop.web").joinpath("static", "dashboard")
SCRIPT = STATIC.joinpath("dashboard.js").read_text()


# The stylesheet's URL names its content, so it can be cached for an hour and still change
# with a release.
STYLESHEET_URL = (
    "/static/dashboard/dashboard.css?v="
    + hashlib.sha256(STATIC.joinpath("dashboard.css").read_bytes()).hexdigest()[:12]
)


def when(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("qrloop.web", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda minor, currency: money(minor, currency, "en")
    env.filters["when"] = when
    env.globals.update(csrf_field=CSRF_FIELD, stylesheet_url=STYLESHEET_URL, script=SCRIPT)
    return env


def security_headers(referrer: str = "same-origin") -> dict[str, str]:
    """Nothing runs but our one hashed script; styles from our own stylesheet only (inline
    SVG draws with attributes, not style); no framing; never cached (pages show codes, keys
    and invitation links). `referrer` is `no-referrer` on pages whose URL holds a secret."""
    return page_headers(
        style_src="'self'",
        script_src=csp_hash(SCRIPT),
        img_src="'self' data:",
        referrer=referrer,
    ) | {"X-Frame-Options": "DENY"}


def render(
    viewer: Viewer | None,
    template: str,
    *,
    status: int = 200,
    cookies: list[Cookie] | None = None,
    headers: dict[str, str] | None = None,
    referrer: str = "same-origin",
    **context: Any,
) -> Response[str]:
    """The page `template` (a name under templates/, e.g. "dashboard/campaigns.html") for
    `viewer` (None on the login pages). Every template gets `viewer`, `nav` (the entries the
    viewer's role sees), `csrf` (the session's token, for `{{ forms.csrf() }}`)."""
    html = (
        environment()
        .get_template(template)
        .render(
            viewer=viewer,
            nav=nav.entries_for(viewer.role) if viewer else [],
            csrf=viewer.csrf if viewer else context.pop("csrf", ""),
            **context,
        )
    )
    return Response(
        html,
        media_type=MediaType.HTML,
        status_code=status,
        cookies=cookies or [],
        headers={**security_headers(referrer), **(headers or {})},
    )
