"""The account's people (owners only): invite one with a role (the answer shows the one-time
link to pass on), change a role, remove someone. The account always keeps an owner."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect

from qrloop.dashboard import users
from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Invitation, Role
from qrloop.errors import Problem, Reason
from qrloop.runtime import Runtime
from qrloop.text import text


class InviteForm(msgspec.Struct):
    email: Annotated[str, text(max_length=320, min_length=0)] = ""
    role: Role = Role.VIEWER


class RoleForm(msgspec.Struct):
    role: Role


InviteFields = Annotated[InviteForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
RoleFields = Annotated[RoleForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


class UserPages(Controller):
    path = "/users"
    include_in_schema = False
    dependencies = requires(Role.OWNER)

    @get("/")
    async def user_list(self, viewer: Viewer, runtime: Runtime) -> Response[str]:
        return await _users_page(viewer, runtime)

    @post("/")
    async def invite(self, data: InviteFields, viewer: Viewer, runtime: Runtime) -> Response[str]:
        """The link is shown on this answer only; only its digest is kept."""
        try:
            invitation = await users.invite(
                runtime.pool,
                viewer.merchant_id,
                data.email,
                data.role,
                runtime.settings.dashboard_invitation_hours,
            )
        except Problem as problem:
            return await _users_page(viewer, runtime, error=_shown(problem), status=problem.status)
        return await _users_page(viewer, runtime, invited=invitation, status=201)

    @post("/{user_id:int}/role")
    async def change_role(
        self, user_id: int, data: RoleFields, viewer: Viewer, runtime: Runtime
    ) -> Response[str]:
        try:
            await users.change_role(runtime.pool, viewer.merchant_id, user_id, data.role)
        except Problem as problem:
            return await _users_page(viewer, runtime, error=_shown(problem), status=problem.status)
        return Redirect("/dashboard/users", status_code=303)

    @post("/{user_id:int}/remove")
    async def remove(self, user_id: int, viewer: Viewer, runtime: Runtime) -> Response[str]:
        try:
            await users.remove(runtime.pool, viewer.merchant_id, user_id)
        except Problem as problem:
            return await _users_page(viewer, runtime, error=_shown(problem), status=problem.status)
        return Redirect("/dashboard/users", status_code=303)


def _shown(problem: Problem) -> str:
    """Bad input and conflicts are explained on the page; anything else is answered as is
    (another merchant's user: 404)."""
    if problem.reason not in (Reason.BAD_REQUEST, Reason.CONFLICT):
        raise problem
    return problem.detail


async def _users_page(
    viewer: Viewer,
    runtime: Runtime,
    *,
    invited: Invitation | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    return render(
        viewer,
        "dashboard/users.html",
        status=status,
        people=await users.listed(runtime.pool, viewer.merchant_id),
        roles=list(Role),
        invited=invited,
        invite_url=invited.url(runtime.settings.base_url) if invited else None,
        hours=runtime.settings.dashboard_invitation_hours,
        error=error,
    )
