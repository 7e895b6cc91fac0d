"""The person's own account: changing their password, which ends every other session."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect

from qrloop.dashboard import limits, passwords, sessions, users
from qrloop.dashboard.auth import (
    COOKIE,
    AnyRequest,
    Viewer,
    client_of,
    requires,
    session_cookie,
)
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Role
from qrloop.runtime import Runtime
from qrloop.text import text

Secret = Annotated[str, text(max_length=1024)]


class PasswordChange(msgspec.Struct):
    current: Secret
    password: Secret
    again: Secret


PasswordFields = Annotated[PasswordChange, Body(media_type=RequestEncodingType.URL_ENCODED)]


class AccountPages(Controller):
    path = "/account"
    include_in_schema = False
    dependencies = requires(Role.VIEWER)

    @get("/")
    async def account(self, viewer: Viewer, changed: bool = False) -> Response[str]:
        return _page(viewer, notice="Your password is changed." if changed else None)

    @post("/password")
    async def change_password(
        self, data: PasswordFields, viewer: Viewer, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        """The current password is asked again (a session left open is not the person) and
        counted as a login is; the new one ends every session, and this browser gets a new
        one."""
        settings = runtime.settings
        counters = limits.counters(viewer.user.email, client_of(request, settings))
        wait = await limits.admit(runtime.redis, settings, counters)
        if wait is not None:
            return _page(
                viewer,
                error=f"Too many attempts: wait {max(1, round(wait / 60))} minutes.",
                status=429,
                headers={"Retry-After": str(wait)},
            )
        stored = await users.password_hash(runtime.pool, viewer.user.id)
        if not await passwords.matches(stored, data.current):
            return _page(viewer, error="Your current password is not that.", status=400)
        await limits.succeeded(runtime.redis, counters)
        error = passwords.refusal(data.password, data.again, viewer.user.email)
        if error is not None:
            return _page(viewer, error=error, status=400)
        new_hash = await passwords.hashed(data.password)
        since = await users.change_password(runtime.pool, viewer.user.id, new_hash)
        await sessions.end(runtime.redis, request.cookies.get(COOKIE))
        token = await sessions.start(
            runtime.redis, settings, viewer.user.id, viewer.merchant_id, since
        )
        return Redirect(
            "/dashboard/account?changed=true",
            status_code=303,
            cookies=[session_cookie(request, settings, token)],
        )


def _page(
    viewer: Viewer,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    return render(
        viewer,
        "dashboard/account.html",
        status=status,
        headers=headers,
        notice=notice,
        error=error,
        min_length=passwords.MIN_LENGTH,
    )
