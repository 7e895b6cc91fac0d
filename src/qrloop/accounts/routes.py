"""Merchant routes for stores and terminals, and the terminal token exchange."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated

import asyncpg
from litestar import Controller, get, post
from litestar.di import Provide

from qrloop.accounts import api_keys, service
from qrloop.accounts.guards import current_merchant
from qrloop.accounts.schemas import (
    ApiKeyIn,
    ApiKeyOut,
    ApiKeyPage,
    NewApiKey,
    StoreIn,
    StoreOut,
    StorePage,
    Switched,
    TerminalIn,
    TerminalOut,
    TerminalPage,
    TerminalSecret,
    TokenIn,
    TokenOut,
)
from qrloop.accounts.tokens import TerminalClaims, epoch_ms, mint
from qrloop.keys import Keys
from qrloop.pagination import DEFAULT_LIMIT, Cursor, Limit, by_id
from qrloop.settings import Settings

StoreFilter = Annotated[int | None, by_id("Only this store's terminals")]


class Action(StrEnum):
    DISABLE = "disable"
    ENABLE = "enable"


class AccountsController(Controller):
    path = "/v1"
    tags = ["accounts"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @post("/api-keys", status_code=201, summary="Create an API key; it is shown once")
    async def create_api_key(
        self, data: ApiKeyIn, merchant_id: int, pool: asyncpg.Pool
    ) -> NewApiKey:
        return await api_keys.create(pool, merchant_id, data.label)

    @get("/api-keys", summary="The account's API keys: prefix and label, never the key")
    async def list_api_keys(
        self,
        merchant_id: int,
        pool: asyncpg.Pool,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> ApiKeyPage:
        """Newest first, revoked keys included; pass `next_cursor` back as `cursor` for the
        next page."""
        return await api_keys.page(pool, merchant_id, cursor, limit)

    @post("/api-keys/{key_id:int}/revoke", status_code=200, summary="Revoke an API key")
    async def revoke_api_key(self, key_id: int, merchant_id: int, pool: asyncpg.Pool) -> ApiKeyOut:
        """Refused at once on every API process. The account's last live key cannot be revoked
        (409 conflict): create its successor first."""
        return await api_keys.revoke(pool, merchant_id, key_id)

    @post("/stores", status_code=201, summary="Create a store")
    async def create_store(self, data: StoreIn, merchant_id: int, pool: asyncpg.Pool) -> StoreOut:
        return await service.create_store(pool, merchant_id, data.name)

    @get("/stores", summary="The account's stores, newest first")
    async def list_stores(
        self,
        merchant_id: int,
        pool: asyncpg.Pool,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> StorePage:
        """Disabled stores included; pass `next_cursor` back as `cursor` for the next page."""
        return await service.stores(pool, merchant_id, cursor, limit)

    @get("/stores/{store_id:int}", summary="Read a store")
    async def get_store(self, store_id: int, merchant_id: int, pool: asyncpg.Pool) -> StoreOut:
        return await service.store(pool, merchant_id, store_id)

    @post("/terminals", status_code=201, summary="Create a terminal; its secret is shown once")
    async def create_terminal(
        self, data: TerminalIn, merchant_id: int, pool: asyncpg.Pool
    ) -> TerminalSecret:
        return await service.create_terminal(pool, merchant_id, data.store_id, data.name)

    @get("/terminals", summary="The account's terminals, newest first; never their secrets")
    async def list_terminals(
        self,
        merchant_id: int,
        pool: asyncpg.Pool,
        store_id: StoreFilter = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> TerminalPage:
        """All the account's terminals, or one store's (another merchant's store id lists
        none); pass `next_cursor` back as `cursor` for the next page."""
        return await service.terminals(pool, merchant_id, store_id, cursor, limit)

    @get("/terminals/{terminal_id:int}", summary="Read a terminal; never its secret")
    async def get_terminal(
        self, terminal_id: int, merchant_id: int, pool: asyncpg.Pool
    ) -> TerminalOut:
        return await service.terminal(pool, merchant_id, terminal_id)

    @post(
        "/stores/{store_id:int}/{action:str}", status_code=200, summary="Disable or enable a store"
    )
    async def switch_store(
        self, store_id: int, action: Action, merchant_id: int, pool: asyncpg.Pool
    ) -> Switched:
        """A disabled store's terminals are refused within seconds on every API process."""
        disabled = action is Action.DISABLE
        await service.set_store_disabled(pool, merchant_id, store_id, disabled)
        return Switched(id=store_id, disabled=disabled)

    @post(
        "/terminals/{terminal_id:int}/rotate-secret",
        status_code=200,
        summary="Replace a terminal's secret; the new one is shown once",
    )
    async def rotate_terminal_secret(
        self, terminal_id: int, merchant_id: int, pool: asyncpg.Pool
    ) -> TerminalSecret:
        """The old secret is refused by the token exchange at once, and access tokens exchanged
        for it are refused within a second on every API process."""
        return await service.rotate_terminal_secret(pool, merchant_id, terminal_id)

    @post(
        "/terminals/{terminal_id:int}/{action:str}",
        status_code=200,
        summary="Disable or enable a terminal",
    )
    async def switch_terminal(
        self, terminal_id: int, action: Action, merchant_id: int, pool: asyncpg.Pool
    ) -> Switched:
        """A disabled terminal is refused within seconds, even with an unexpired token."""
        disabled = action is Action.DISABLE
        await service.set_terminal_disabled(pool, merchant_id, terminal_id, disabled)
        return Switched(id=terminal_id, disabled=disabled)


@post(
    "/v1/terminal/token", status_code=200, tags=["terminal"], summary="Exchange a terminal secret"
)
async def exchange_token(
    data: TokenIn, pool: asyncpg.Pool, settings: Settings, keys: Keys
) -> TokenOut:
    """A short-lived access token for the till; exchange again before it expires."""
    terminal = await service.authenticate_terminal(pool, data.terminal_id, data.secret)
    ttl = settings.token_ttl_seconds
    claims = TerminalClaims(
        terminal_id=data.terminal_id,
        store_id=terminal.store_id,
        merchant_id=terminal.merchant_id,
        expires_at=int(time.time()) + ttl,
        credentials_since_ms=epoch_ms(terminal.credentials_since),
    )
    return TokenOut(access_token=mint(keys.keyring, claims), expires_in=ttl)
