"""Logging in and out, and setting a password from an invitation link."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Redirect

from qrloop.dashboard import limits, passwords, sessions, users
from qrloop.dashboard.auth import (
    COOKIE,
    LOGIN_PATH,
    AnyRequest,
    Viewer,
    check_form_token,
    client_of,
    form_cookie,
    form_token,
    local_next,
    requires,
    session_cookie,
)
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Role
from qrloop.runtime import Runtime
from qrloop.text import text

WRONG = "Wrong email or password."  # the same for an unknown email: no one learns who has one
TOO_MANY = "Too many attempts: wait {minutes} minutes and try again."
WELCOME = "Your password is set: log in with it."
HOME = "/dashboard/campaigns"


class LoginForm(msgspec.Struct):
    email: Annotated[str, text(max_length=320)]
    password: Annotated[str, text(max_length=1024)]
    next_path: Annotated[str, text(max_length=2000, min_length=0)] = msgspec.field(
        default="", name="next"
    )


class PasswordForm(msgspec.Struct):
    password: Annotated[str, text(max_length=1024)]
    again: Annotated[str, text(max_length=1024)]


NextPath = Annotated[str, QueryParameter(name="next", required=False, max_length=2000)]
PasswordSet = Annotated[bool, QueryParameter(name="set", required=False)]
Login = Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
NewPassword = Annotated[PasswordForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


def _login_page(
    request: AnyRequest,
    runtime: Runtime,
    *,
    next_path: str = "",
    email: str = "",
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    token = form_token(request)
    return render(
        None,
        "dashboard/login.html",
        status=status,
        headers=headers,
        cookies=[form_cookie(request, runtime.settings, token)],
        csrf=token,
        next=next_path,
        email=email,
        error=error,
        notice=notice,
    )


class LoginPages(Controller):
    include_in_schema = False

    @get("/", dependencies=requires(Role.VIEWER))
    async def home(self, viewer: Viewer) -> Redirect:
        return Redirect(HOME, status_code=303)

    @get("/login")
    async def login_page(
        self,
        request: AnyRequest,
        runtime: Runtime,
        next_path: NextPath = "",
        password_set: PasswordSet = False,
    ) -> Response[str]:
        notice = WELCOME if password_set else None
        return _login_page(request, runtime, next_path=next_path, notice=notice)

    @post("/login")
    async def login(self, data: Login, request: AnyRequest, runtime: Runtime) -> Response[str]:
        """Counted against the email and the client's address before the password is checked;
        a right password starts a new session (a new cookie: a session id planted before login
        is never promoted)."""
        await check_form_token(request)
        settings = runtime.settings
        counters = limits.counters(data.email, client_of(request, settings))
        wait = await limits.admit(runtime.redis, settings, counters)
        if wait is not None:
            return _login_page(
                request,
                runtime,
                next_path=data.next_path,
                email=data.email,
                error=TOO_MANY.format(minutes=max(1, round(wait / 60))),
                status=429,
                headers={"Retry-After": str(wait)},
            )
        found = await users.credentials(runtime.pool, data.email)
        stored = found[1] if found else None
        if found is None or not await passwords.matches(stored, data.password):
            return _login_page(
                request,
                runtime,
                next_path=data.next_path,
                email=data.email,
                error=WRONG,
                status=401,
            )
        user_id = found[0]
        assert stored is not None
        await limits.succeeded(runtime.redis, counters)
        rehashed = await passwords.hashed(data.password) if passwords.needs_rehash(stored) else None
        await users.logged_in(runtime.pool, user_id, rehashed)
        user = await users.by_id(runtime.pool, user_id)
        assert user is not None
        await sessions.end(runtime.redis, request.cookies.get(COOKIE))
        token = await sessions.start(
            runtime.redis, settings, user.id, user.merchant_id, user.sessions_since
        )
        return Redirect(
            local_next(data.next_path),
            status_code=303,
            cookies=[
                session_cookie(request, settings, token),
                form_cookie(request, settings, None),
            ],
        )

    @post("/logout", dependencies=requires(Role.VIEWER))
    async def logout(self, viewer: Viewer, request: AnyRequest, runtime: Runtime) -> Redirect:
        await sessions.end(runtime.redis, request.cookies.get(COOKIE))
        return Redirect(
            LOGIN_PATH,
            status_code=303,
            cookies=[session_cookie(request, runtime.settings, None)],
        )

    @get("/set-password/{token:str}")
    async def set_password_page(
        self, token: str, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        email = await users.invited_email(runtime.pool, token)
        return self._password_page(token, email, request, runtime, status=200 if email else 404)

    @post("/set-password/{token:str}")
    async def set_password(
        self, token: str, data: NewPassword, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        """Spends the invitation; every session the person had ends. They then log in."""
        await check_form_token(request)
        email = await users.invited_email(runtime.pool, token)
        if email is None:
            return self._password_page(token, None, request, runtime, status=404)
        error = passwords.refusal(data.password, data.again, email)
        if error is not None:
            return self._password_page(token, email, request, runtime, error=error, status=400)
        if await users.accept(runtime.pool, token, await passwords.hashed(data.password)) is None:
            # Spent by a concurrent request between the check and now.
            return self._password_page(token, None, request, runtime, status=404)
        return Redirect(f"{LOGIN_PATH}?set=true", status_code=303)

    @staticmethod
    def _password_page(
        token: str,
        email: str | None,
        request: AnyRequest,
        runtime: Runtime,
        *,
        error: str | None = None,
        status: int,
    ) -> Response[str]:
        form = form_token(request)
        return render(
            None,
            "dashboard/set_password.html",
            status=status,
            # The token is in this page's URL: no Referer may carry it elsewhere.
            referrer="no-referrer",
            cookies=[form_cookie(request, runtime.settings, form)],
            csrf=form,
            token=token,
            email=email,
            error=error,
            min_length=passwords.MIN_LENGTH,
        )
