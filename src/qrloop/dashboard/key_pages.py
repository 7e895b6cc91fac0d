"""API keys, for the programs of the account: listed without their secrets, created (the key
shown once, on the answer to the form), revoked. Owners only: a key can do everything the
API can."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect

from qrloop.accounts import api_keys
from qrloop.accounts.schemas import ApiKeyIn, NewApiKey
from qrloop.dashboard import forms
from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Role
from qrloop.errors import Problem, Reason
from qrloop.pagination import Cursor
from qrloop.runtime import Runtime
from qrloop.text import text

PAGE_SIZE = 100


class KeyForm(msgspec.Struct):
    label: Annotated[str, text(max_length=200, min_length=0)] = ""


KeyFields = Annotated[KeyForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


class ApiKeyPages(Controller):
    path = "/api-keys"
    include_in_schema = False
    dependencies = requires(Role.OWNER)

    @get("/")
    async def key_list(
        self, viewer: Viewer, runtime: Runtime, cursor: Cursor = None
    ) -> Response[str]:
        return await _keys_page(viewer, runtime, cursor)

    @post("/")
    async def create_key(self, data: KeyFields, viewer: Viewer, runtime: Runtime) -> Response[str]:
        """The new key is on this answer only (never cached: `Cache-Control: no-store`)."""
        try:
            label = forms.convert({"label": data.label.strip()}, ApiKeyIn).label
        except Problem as problem:
            return await _keys_page(viewer, runtime, None, error=problem.detail, status=400)
        created = await api_keys.create(runtime.pool, viewer.merchant_id, label)
        return await _keys_page(viewer, runtime, None, created=created, status=201)

    @post("/{key_id:int}/revoke")
    async def revoke_key(self, key_id: int, viewer: Viewer, runtime: Runtime) -> Response[str]:
        try:
            await api_keys.revoke(runtime.pool, viewer.merchant_id, key_id)
        except Problem as problem:
            if problem.reason is not Reason.CONFLICT:
                raise
            return await _keys_page(viewer, runtime, None, error=problem.detail, status=409)
        return Redirect("/dashboard/api-keys", status_code=303)


async def _keys_page(
    viewer: Viewer,
    runtime: Runtime,
    cursor: str | None,
    *,
    created: NewApiKey | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    page = await api_keys.page(runtime.pool, viewer.merchant_id, cursor, PAGE_SIZE)
    return render(
        viewer, "dashboard/api_keys.html", status=status, page=page, created=created, error=error
    )
