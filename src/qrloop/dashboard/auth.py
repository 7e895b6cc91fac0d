"""Who is using the dashboard, and what they may do: the session behind the cookie, its user
(read from PostgreSQL on every request, so a removal or a role change takes effect at once),
the role a page needs, and the CSRF token every state-changing form must carry.

A page asks for its viewer by dependency, with the least role it needs:

    @get("/things", dependencies=requires(Role.VIEWER))
    async def things(self, viewer: Viewer, runtime: Runtime) -> Response[str]: ...

`viewer.merchant_id` scopes every query; `viewer.role` is the user's role. Without a live
session a GET is sent to the login page (and back after it), anything else is 401; a role
below the page's is 403; a POST, PUT, PATCH or DELETE without the session's CSRF token in its
form field `csrf_token` is 403, before the handler runs.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.response import Redirect

from qrloop.claim import client_address
from qrloop.dashboard import sessions, users
from qrloop.dashboard.sessions import Session
from qrloop.dashboard.users import Role, User
from qrloop.errors import Problem, Reason
from qrloop.runtime import Runtime
from qrloop.settings import Settings

PATH = "/dashboard"
LOGIN_PATH = f"{PATH}/login"
COOKIE = "qrloop_dashboard"
# Before there is a session (the login and set-password forms), the CSRF token is this
# cookie's value, repeated in the form: another site can neither read nor set it.
FORM_COOKIE = "qrloop_dashboard_form"
CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_COOKIE_SECONDS = 3600

AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind a request: their user, their merchant and role, their session."""

    user: User
    session: Session
    path: str  # the page asked for: the navigation marks its section

    @property
    def merchant_id(self) -> int:
        return self.user.merchant_id

    @property
    def role(self) -> Role:
        return self.user.role

    @property
    def csrf(self) -> str:
        return self.session.csrf


class LoginRequired(Exception):
    """No live session: the dashboard's router answers with the login page (or 401)."""


def requires(role: Role) -> dict[str, Provide]:
    """The `viewer` dependency of a page that needs at least `role`."""

    async def viewer(request: AnyRequest, runtime: Runtime) -> Viewer:
        return await current_viewer(request, runtime, role)

    return {"viewer": Provide(viewer)}


async def current_viewer(request: AnyRequest, runtime: Runtime, role: Role) -> Viewer:
    token = request.cookies.get(COOKIE)
    session = await sessions.find(runtime.redis, runtime.settings, token)
    if session is None:
        raise _logged_out(request)
    user = await users.by_id(runtime.pool, session.user_id)
    if user is None or not _still_valid(session, user):
        await sessions.end(runtime.redis, token)
        raise _logged_out(request)
    if request.method not in _SAFE_METHODS:
        await check_csrf(request, session.csrf)
    if not user.role.covers(role):
        raise Problem(
            Reason.FORBIDDEN, f"This needs the {role} role or above; you are a {user.role}."
        )
    return Viewer(user, session, request.url.path)


def _still_valid(session: Session, user: User) -> bool:
    """The user can still log in to the same merchant, and has not set a password since the
    session started."""
    since_ms = user.sessions_since.timestamp() * 1000
    same_merchant = user.merchant_id == session.merchant_id
    return user.active and same_merchant and session.started_ms >= since_ms


async def check_csrf(request: AnyRequest, expected: str | None) -> None:
    """403 unless the form's `csrf_token` is `expected` (compared in constant time)."""
    sent = (await request.form()).get(CSRF_FIELD)
    if not (
        isinstance(sent, str) and expected and hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise Problem(
            Reason.FORBIDDEN,
            "The form's CSRF token is missing or wrong: reload the page and send it again.",
        )


def _logged_out(request: AnyRequest) -> Exception:
    """A page asked for without a session goes to the login page (`LoginRequired`); anything
    else (a form sent after the session ended) is 401."""
    if request.method == "GET":
        return LoginRequired()
    return Problem(Reason.UNAUTHORIZED, "Your session has ended: log in again.")


def on_login_required(request: AnyRequest, _: LoginRequired) -> Response[Any]:
    """The login page, then back to the page asked for."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"{LOGIN_PATH}?next={quote(here, safe='')}", status_code=303)


def local_next(target: str | None) -> str:
    """Where to go after login: a dashboard path only (never another site: `//evil` or
    `/dashboard/../x` are refused), else the dashboard's home."""
    if (
        target
        and target.startswith(PATH + "/")
        and "//" not in target
        and "\\" not in target
        and "/../" not in target
    ):
        return target
    return PATH + "/"


def served_over_https(request: AnyRequest, settings: Settings) -> bool:
    """The browser reached us over https: directly, by the public URL, or through a trusted
    proxy that says so (X-Forwarded-Proto from anyone else is ignored)."""
    if request.url.scheme == "https" or settings.base_url.startswith("https://"):
        return True
    peer = request.client.host if request.client else None
    trusted = client_address.trusted_networks(settings.trusted_proxies)
    if not client_address.from_trusted_proxy(peer, trusted):
        return False
    proto = request.headers.get("x-forwarded-proto", "")
    return proto.split(",")[-1].strip().lower() == "https"


def client_of(request: AnyRequest, settings: Settings) -> str:
    """The client's address, as the login limit counts it."""
    return client_address.client_address(
        request.client.host if request.client else None,
        request.headers.getall("x-forwarded-for", []),
        client_address.trusted_networks(settings.trusted_proxies),
    )


def _cookie(
    request: AnyRequest, settings: Settings, key: str, value: str, max_age: int, samesite: str
) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path=PATH,
        httponly=True,
        samesite=samesite,  # type: ignore[arg-type]
        secure=served_over_https(request, settings),
        max_age=max_age,
    )


def session_cookie(request: AnyRequest, settings: Settings, token: str | None) -> Cookie:
    """The session's cookie; without a token, its removal. Lax: a link from a mail to a
    dashboard page finds the session; forms from other sites do not carry it."""
    if token is None:
        return _cookie(request, settings, COOKIE, "", 0, "lax")
    return _cookie(request, settings, COOKIE, token, sessions.lifetime_seconds(settings), "lax")


def form_token(request: AnyRequest) -> str:
    """This browser's pre-session CSRF token: the one its cookie holds, or a new one."""
    held = request.cookies.get(FORM_COOKIE, "")
    if 32 <= len(held) <= 64 and held.replace("-", "").replace("_", "").isalnum():
        return held
    return secrets.token_urlsafe(32)


def form_cookie(request: AnyRequest, settings: Settings, token: str | None) -> Cookie:
    """The pre-session token's cookie (Strict: sent only from our own pages); without a
    token, its removal."""
    if token is None:
        return _cookie(request, settings, FORM_COOKIE, "", 0, "strict")
    return _cookie(request, settings, FORM_COOKIE, token, _FORM_COOKIE_SECONDS, "strict")


async def check_form_token(request: AnyRequest) -> None:
    """The pre-session CSRF check: the form repeats this browser's cookie."""
    await check_csrf(request, request.cookies.get(FORM_COOKIE))
