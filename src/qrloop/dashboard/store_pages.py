"""Stores and terminals: listed, created, disabled and enabled; a terminal's secret is shown
on the answer that made it (creation or rotation) and never again; a phone is paired as a
terminal's till by a one-time link shown as a QR, and revoked. Managers and owners; the
accounts and till services do the work, as for the API, so another merchant's ids are 404."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect

from qrloop.accounts import service as accounts
from qrloop.accounts.routes import Action
from qrloop.accounts.schemas import StoreIn, TerminalIn, TerminalSecret
from qrloop.dashboard import forms
from qrloop.dashboard.auth import Viewer, requires
from qrloop.dashboard.pages import render
from qrloop.dashboard.users import Role
from qrloop.errors import Problem, Reason
from qrloop.pagination import Cursor
from qrloop.runtime import Runtime
from qrloop.till import service as till
from qrloop.till.schemas import PairingOut

PAGE_SIZE = 50
DEVICES_SHOWN = 20


class NameForm(msgspec.Struct):
    name: str = ""


NameFields = Annotated[NameForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


def _bad_name(problem: Problem) -> str:
    if problem.reason is not Reason.BAD_REQUEST:
        raise problem
    return problem.detail


class StorePages(Controller):
    path = "/stores"
    include_in_schema = False
    dependencies = requires(Role.MANAGER)

    @get("/")
    async def store_list(
        self, viewer: Viewer, runtime: Runtime, cursor: Cursor = None
    ) -> Response[str]:
        return await _stores_page(viewer, runtime, cursor)

    @post("/")
    async def create_store(
        self, data: NameFields, viewer: Viewer, runtime: Runtime
    ) -> Response[str]:
        try:
            name = forms.convert({"name": data.name.strip()}, StoreIn).name
        except Problem as problem:
            return await _stores_page(viewer, runtime, None, error=_bad_name(problem))
        store = await accounts.create_store(runtime.pool, viewer.merchant_id, name)
        return Redirect(f"/dashboard/stores/{store.id}", status_code=303)

    @get("/{store_id:int}")
    async def store(
        self, store_id: int, viewer: Viewer, runtime: Runtime, cursor: Cursor = None
    ) -> Response[str]:
        return await _store_page(viewer, runtime, store_id, cursor)

    @post("/{store_id:int}/terminals")
    async def create_terminal(
        self, store_id: int, data: NameFields, viewer: Viewer, runtime: Runtime
    ) -> Response[str]:
        """The new terminal's page, with its secret: shown on this answer only."""
        try:
            fields = {"store_id": store_id, "name": data.name.strip()}
            name = forms.convert(fields, TerminalIn).name
        except Problem as problem:
            return await _store_page(viewer, runtime, store_id, None, error=_bad_name(problem))
        created = await accounts.create_terminal(runtime.pool, viewer.merchant_id, store_id, name)
        return await _terminal_page(viewer, runtime, created.id, secret=created, status=201)

    @post("/{store_id:int}/{action:str}")
    async def switch_store(
        self, store_id: int, action: Action, viewer: Viewer, runtime: Runtime
    ) -> Redirect:
        """Disable (its terminals are refused within seconds) or enable a store."""
        disabled = action is Action.DISABLE
        await accounts.set_store_disabled(runtime.pool, viewer.merchant_id, store_id, disabled)
        return Redirect(f"/dashboard/stores/{store_id}", status_code=303)


class TerminalPages(Controller):
    path = "/terminals"
    include_in_schema = False
    dependencies = requires(Role.MANAGER)

    @get("/{terminal_id:int}")
    async def terminal(self, terminal_id: int, viewer: Viewer, runtime: Runtime) -> Response[str]:
        return await _terminal_page(viewer, runtime, terminal_id)

    @post("/{terminal_id:int}/rotate-secret")
    async def rotate(self, terminal_id: int, viewer: Viewer, runtime: Runtime) -> Response[str]:
        """A new secret, shown on this answer only; the old one is refused at once."""
        rotated = await accounts.rotate_terminal_secret(
            runtime.pool, viewer.merchant_id, terminal_id
        )
        return await _terminal_page(viewer, runtime, terminal_id, secret=rotated)

    @post("/{terminal_id:int}/pair")
    async def pair(self, terminal_id: int, viewer: Viewer, runtime: Runtime) -> Response[str]:
        """Pair a phone: a one-time link (and its QR) valid ten minutes, shown on this answer
        only (the till service's pairing, as POST /v1/terminals/{id}/pairings)."""
        pairing = await till.start_pairing(
            runtime.pool, runtime.settings.base_url, viewer.merchant_id, terminal_id
        )
        return await _terminal_page(viewer, runtime, terminal_id, pairing=pairing, status=201)

    @post("/{terminal_id:int}/devices/{device_id:int}/revoke")
    async def revoke_device(
        self, terminal_id: int, device_id: int, viewer: Viewer, runtime: Runtime
    ) -> Redirect:
        """The phone's credential is refused at once, its tokens within a second."""
        await till.revoke_device(runtime.pool, viewer.merchant_id, terminal_id, device_id)
        return Redirect(f"/dashboard/terminals/{terminal_id}", status_code=303)

    @post("/{terminal_id:int}/{action:str}")
    async def switch_terminal(
        self, terminal_id: int, action: Action, viewer: Viewer, runtime: Runtime
    ) -> Redirect:
        disabled = action is Action.DISABLE
        await accounts.set_terminal_disabled(
            runtime.pool, viewer.merchant_id, terminal_id, disabled
        )
        return Redirect(f"/dashboard/terminals/{terminal_id}", status_code=303)


async def _stores_page(
    viewer: Viewer, runtime: Runtime, cursor: str | None, *, error: str | None = None
) -> Response[str]:
    page = await accounts.stores(runtime.pool, viewer.merchant_id, cursor, PAGE_SIZE)
    return render(
        viewer, "dashboard/stores.html", status=400 if error else 200, page=page, error=error
    )


async def _store_page(
    viewer: Viewer,
    runtime: Runtime,
    store_id: int,
    cursor: str | None,
    *,
    error: str | None = None,
) -> Response[str]:
    store = await accounts.store(runtime.pool, viewer.merchant_id, store_id)
    terminals = await accounts.terminals(
        runtime.pool, viewer.merchant_id, store_id, cursor, PAGE_SIZE
    )
    return render(
        viewer,
        "dashboard/store.html",
        status=400 if error else 200,
        store=store,
        terminals=terminals,
        error=error,
    )


async def _terminal_page(
    viewer: Viewer,
    runtime: Runtime,
    terminal_id: int,
    *,
    secret: TerminalSecret | None = None,
    pairing: PairingOut | None = None,
    status: int = 200,
) -> Response[str]:
    terminal = await accounts.terminal(runtime.pool, viewer.merchant_id, terminal_id)
    store = await accounts.store(runtime.pool, viewer.merchant_id, terminal.store_id)
    devices = await till.devices(runtime.pool, viewer.merchant_id, terminal_id, None, DEVICES_SHOWN)
    return render(
        viewer,
        "dashboard/terminal.html",
        status=status,
        terminal=terminal,
        store=store,
        secret=secret,
        pairing=pairing,
        devices=devices.items,
        # The pairing link is a credential until used: never in a Referer.
        referrer="no-referrer" if pairing else "same-origin",
    )
