"""The dashboard's pieces that need no server: passwords, roles, where a login may lead,
when cookies are Secure, reading forms, and the pages' escaping and script hash."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher
from litestar import Request

from qrloop.dashboard import forms, passwords
from qrloop.dashboard.auth import Viewer, local_next, served_over_https
from qrloop.dashboard.nav import entries_for
from qrloop.dashboard.pages import SCRIPT, render, security_headers
from qrloop.dashboard.sessions import Session
from qrloop.dashboard.users import Role, User
from qrloop.errors import Problem
from qrloop.pagination import Page
from qrloop.settings import Settings


def test_a_password_is_checked_against_its_argon2id_hash_only() -> None:
    """The hash is argon2id; the right password matches, a wrong one, a missing hash and a
    hash that is no argon2 hash do not."""
    stored = asyncio.run(passwords.hashed("a long enough password"))
    assert stored.startswith("$argon2id$")
    assert asyncio.run(passwords.matches(stored, "a long enough password"))
    assert not asyncio.run(passwords.matches(stored, "a long enough passworD"))
    assert not asyncio.run(passwords.matches(None, "a long enough password"))
    assert not asyncio.run(passwords.matches("sha256$abc", "a long enough password"))


def test_a_hash_made_with_weaker_parameters_is_due_for_a_rehash() -> None:
    """Today's parameters need no rehash; a hash of one pass and 8 MiB does."""
    assert not passwords.needs_rehash(asyncio.run(passwords.hashed("a long enough password")))
    weak = PasswordHasher(time_cost=1, memory_cost=8192).hash("a long enough password")
    assert passwords.needs_rehash(weak)


@pytest.mark.parametrize(
    ("password", "refused"),
    [
        ("short", True),
        ("x" * 11, True),
        ("x" * 12, False),
        ("x" * 257, True),
        ("my ana@example.com pw", True),
        ("correct horse battery staple", False),
    ],
)
def test_passwords_are_judged_by_length_and_not_being_the_email(
    password: str, refused: bool
) -> None:
    """At least 12 and at most 256 characters, and not containing the email (any case)."""
    assert (passwords.weakness(password, "Ana@example.com") is not None) is refused


def test_roles_cover_the_roles_below_them() -> None:
    """owner ⊇ manager ⊇ viewer, and never upwards."""
    assert Role.OWNER.covers(Role.MANAGER) and Role.OWNER.covers(Role.VIEWER)
    assert Role.MANAGER.covers(Role.VIEWER) and not Role.MANAGER.covers(Role.OWNER)
    assert not Role.VIEWER.covers(Role.MANAGER)
    assert all(role.covers(role) for role in Role)


@pytest.mark.parametrize(
    ("target", "landing"),
    [
        ("/dashboard/campaigns?status=paused", "/dashboard/campaigns?status=paused"),
        (None, "/dashboard/"),
        ("", "/dashboard/"),
        ("/dashboardx/", "/dashboard/"),
        ("//evil.example/dashboard/", "/dashboard/"),
        ("https://evil.example/dashboard/", "/dashboard/"),
        ("/dashboard//evil.example", "/dashboard/"),
        ("/dashboard/../v1/api-keys", "/dashboard/"),
        ("/dashboard/\\\\evil.example", "/dashboard/"),
    ],
)
def test_login_leads_only_to_a_dashboard_page(target: str | None, landing: str) -> None:
    """An open redirect would make our login page a phisher's springboard."""
    assert local_next(target) == landing


def _request(peer: str, headers: dict[str, str], scheme: str = "http") -> Request:  # type: ignore[type-arg]
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/dashboard/",
            "raw_path": b"/dashboard/",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": (peer, 50000),
            "scheme": scheme,
            "server": ("qrloop.example", 80),
            "query_string": b"",
            "root_path": "",
        }
    )


@pytest.mark.parametrize(
    ("peer", "headers", "scheme", "public_url", "secure"),
    [
        ("10.0.0.1", {}, "http", None, False),
        ("10.0.0.1", {}, "https", None, True),
        ("10.0.0.1", {}, "http", "https://pay.example", True),
        ("10.0.0.1", {"X-Forwarded-Proto": "https"}, "http", None, True),  # trusted proxy
        ("203.0.113.9", {"X-Forwarded-Proto": "https"}, "http", None, False),  # anyone else
        ("10.0.0.1", {"X-Forwarded-Proto": "https, http"}, "http", None, False),  # nearest hop
    ],
)
def test_cookies_are_secure_only_over_https_as_far_as_we_can_trust(
    peer: str, headers: dict[str, str], scheme: str, public_url: str | None, secure: bool
) -> None:
    """X-Forwarded-Proto counts only from a proxy in QRLOOP_TRUSTED_PROXIES, and only its own
    (last) value."""
    settings = Settings(trusted_proxies="10.0.0.0/8", public_url=public_url)
    assert served_over_https(_request(peer, headers, scheme), settings) is secure


def test_face_values_are_typed_in_major_units() -> None:
    """5.00 CNY is 500 minor units, 500 JPY is 500; more decimals than the currency has, a
    negative amount or words are refused."""
    assert forms.minor_units("5.00", "CNY") == 500
    assert forms.minor_units(" 12.5 ", "USD") == 1250
    assert forms.minor_units("500", "JPY") == 500
    for amount, currency in (("5.001", "CNY"), ("5.5", "JPY"), ("-1", "CNY"), ("five", "CNY")):
        with pytest.raises(Problem):
            forms.minor_units(amount, currency)


def test_moments_are_typed_in_the_campaigns_timezone() -> None:
    """A datetime-local value is the campaign's local time, shown back the same way."""
    zone = forms.zone("Asia/Shanghai")
    moment = forms.local_moment("2026-12-01T10:00", zone)
    assert moment == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert forms.as_local(moment, "Asia/Shanghai") == "2026-12-01T10:00"
    assert forms.local_moment("  ", zone) is None
    with pytest.raises(Problem):
        forms.zone("Mars/Olympus")
    with pytest.raises(Problem):
        forms.local_moment("tomorrow", zone)


def _viewer(role: Role = Role.OWNER) -> Viewer:
    now = datetime.now(UTC)
    user = User(1, 7, "Cone <b>& Co</b>", "ana@example.com", role, True, now, now, None)
    return Viewer(user, Session("k", 1, 7, "csrf-token-of-the-session", 0), "/dashboard/campaigns")


def test_pages_escape_what_people_typed_and_carry_the_sessions_token() -> None:
    """A campaign named with markup is shown as text; the layout's logout form carries the
    session's CSRF token; the navigation shows the role's sections."""
    page = render(
        _viewer(),
        "dashboard/campaigns.html",
        page=Page(items=[], next_cursor=None),
        shown=None,
        statuses=("active",),
    )
    html = page.content
    assert "Cone &lt;b&gt;&amp; Co&lt;/b&gt;" in html
    assert "<b>" not in html
    assert 'name="csrf_token" value="csrf-token-of-the-session"' in html
    viewer_page = render(
        _viewer(Role.VIEWER),
        "dashboard/campaigns.html",
        page=Page(items=[], next_cursor=None),
        shown=None,
        statuses=(),
    )
    assert "API keys" in html and "API keys" not in viewer_page.content


def test_the_policy_allows_exactly_the_script_the_pages_carry() -> None:
    """The script inlined in the layout is byte for byte the one whose hash the policy
    names, so it runs and nothing else does."""
    html = render(
        None, "dashboard/login.html", csrf="t", next="", email="", error=None, notice=None
    ).content
    [inline] = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert inline == SCRIPT
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in security_headers()["Content-Security-Policy"]


def test_an_orders_page_belongs_to_the_campaigns_section() -> None:
    """The navigation marks Campaigns on a campaign's page and on an order's, nothing else."""
    marked = {
        path: [entry.label for entry in entries_for(Role.OWNER) if entry.holds(path)]
        for path in ("/dashboard/campaigns/3", "/dashboard/orders/9", "/dashboard/users")
    }
    assert marked == {
        "/dashboard/campaigns/3": ["Campaigns"],
        "/dashboard/orders/9": ["Campaigns"],
        "/dashboard/users": ["Users"],
    }
