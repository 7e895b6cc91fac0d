"""Accounts in PostgreSQL: every query is scoped to the merchant that asks."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop.accounts import api_keys
from qrloop.accounts.schemas import StoreOut, TerminalOut, TerminalSecret
from qrloop.accounts.secrets import TERMINAL_SECRET_PREFIX, digest, new_secret
from qrloop.errors import Problem, Reason
from qrloop.pagination import Page, newest_page, page_sql

_STORE = "id, name, disabled_at IS NOT NULL AS disabled, created_at"
_TERMINAL = "id, store_id, name, disabled_at IS NOT NULL AS disabled, created_at"


def _no_store(store_id: int) -> Problem:
    return Problem(Reason.NOT_FOUND, f"No store {store_id} in this account.")


def no_terminal(terminal_id: int) -> Problem:
    return Problem(Reason.NOT_FOUND, f"No terminal {terminal_id} in this account.")


async def create_merchant(pool: asyncpg.Pool, name: str) -> tuple[int, str]:
    """A new merchant and its first API key, labelled "initial" (returned once, stored as a
    digest)."""
    async with pool.acquire() as connection, connection.transaction():
        return await insert_merchant(connection, name)


async def insert_merchant(connection: PoolConnectionProxy, name: str) -> tuple[int, str]:
    """`create_merchant` within the caller's transaction (which may add the merchant's owner)."""
    merchant_id: int = await connection.fetchval(
        "INSERT INTO merchants (name) VALUES ($1) RETURNING id", name
    )
    first_key = await api_keys.create(connection, merchant_id, api_keys.INITIAL_LABEL)
    return merchant_id, first_key.api_key


async def create_store(pool: asyncpg.Pool, merchant_id: int, name: str) -> StoreOut:
    row = await pool.fetchrow(
        f"INSERT INTO stores (merchant_id, name) VALUES ($1, $2) RETURNING {_STORE}",
        merchant_id,
        name,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return StoreOut(**row)


async def create_terminal(
    pool: asyncpg.Pool, merchant_id: int, store_id: int, name: str
) -> TerminalSecret:
    """A terminal in one of the merchant's own stores, with its secret (returned once)."""
    secret, secret_digest = new_secret(TERMINAL_SECRET_PREFIX)
    row = await pool.fetchrow(
        "INSERT INTO terminals (store_id, merchant_id, name, secret_digest)"
        " SELECT id, merchant_id, $3, $4 FROM stores"
        " WHERE id = $1 AND merchant_id = $2 AND disabled_at IS NULL"
        f" RETURNING {_TERMINAL}",
        store_id,
        merchant_id,
        name,
        secret_digest,
    )
    if row is None:
        raise _no_store(store_id)
    return TerminalSecret(**row, secret=secret)


STORES_PAGE = page_sql(f"SELECT {_STORE} FROM stores")
TERMINALS_PAGE = page_sql(f"SELECT {_TERMINAL} FROM terminals")
TERMINALS_OF_STORE_PAGE = page_sql(f"SELECT {_TERMINAL} FROM terminals", " AND store_id = $4")


async def stores(
    pool: asyncpg.Pool, merchant_id: int, cursor: str | None, limit: int
) -> Page[StoreOut]:
    return await newest_page(
        pool, STORES_PAGE, merchant_id, cursor, limit, out=lambda row: StoreOut(**row)
    )


async def store(pool: asyncpg.Pool, merchant_id: int, store_id: int) -> StoreOut:
    row = await pool.fetchrow(
        f"SELECT {_STORE} FROM stores WHERE id = $1 AND merchant_id = $2", store_id, merchant_id
    )
    if row is None:
        raise _no_store(store_id)
    return StoreOut(**row)


async def terminals(
    pool: asyncpg.Pool, merchant_id: int, store_id: int | None, cursor: str | None, limit: int
) -> Page[TerminalOut]:
    """The merchant's terminals, or those of one of its stores (another's store: none)."""
    query, filters = (
        (TERMINALS_PAGE, ()) if store_id is None else (TERMINALS_OF_STORE_PAGE, (store_id,))
    )
    return await newest_page(
        pool, query, merchant_id, cursor, limit, *filters, out=lambda row: TerminalOut(**row)
    )


async def terminal(pool: asyncpg.Pool, merchant_id: int, terminal_id: int) -> TerminalOut:
    row = await pool.fetchrow(
        f"SELECT {_TERMINAL} FROM terminals WHERE id = $1 AND merchant_id = $2",
        terminal_id,
        merchant_id,
    )
    if row is None:
        raise no_terminal(terminal_id)
    return TerminalOut(**row)


class TerminalCredentials(NamedTuple):
    """What a terminal's access token says about it, read with its secret's digest."""

    store_id: int
    merchant_id: int
    credentials_since: datetime | None


async def authenticate_terminal(
    pool: asyncpg.Pool, terminal_id: int, secret: str
) -> TerminalCredentials:
    """The credentials of an enabled terminal whose secret matches.

    `credentials_since` comes from the same row version as the digest, so a token exchanged for
    a secret that a rotation has just replaced necessarily carries the older value.
    """
    row = await pool.fetchrow(
        "SELECT t.secret_digest, t.store_id, s.merchant_id, t.credentials_since FROM terminals t"
        " JOIN stores s ON s.id = t.store_id"
        " WHERE t.id = $1 AND t.disabled_at IS NULL AND s.disabled_at IS NULL",
        terminal_id,
    )
    # Compare even when the terminal is unknown, so timing does not reveal which ids exist.
    expected = row["secret_digest"] if row else b"\0" * 32
    if not hmac.compare_digest(expected, digest(secret)) or row is None:
        raise Problem(Reason.UNAUTHORIZED, "Unknown terminal or wrong secret.")
    return TerminalCredentials(row["store_id"], row["merchant_id"], row["credentials_since"])


async def rotate_terminal_secret(
    pool: asyncpg.Pool, merchant_id: int, terminal_id: int
) -> TerminalSecret:
    """Replace the secret of one of the merchant's terminals; the new one is in the answer.

    The old secret stops working for the exchange at once; tokens exchanged for it are refused
    once every API process has read the new `credentials_since` (TerminalGate). Each rotation
    moves it forward by at least a millisecond, the precision tokens carry it in.
    """
    secret, secret_digest = new_secret(TERMINAL_SECRET_PREFIX)
    row = await pool.fetchrow(
        "UPDATE terminals SET secret_digest = $3, credentials_since ="
        " greatest(clock_timestamp(), credentials_since + interval '1 millisecond')"
        f" WHERE id = $1 AND merchant_id = $2 RETURNING {_TERMINAL}",
        terminal_id,
        merchant_id,
        secret_digest,
    )
    if row is None:
        raise no_terminal(terminal_id)
    return TerminalSecret(**row, secret=secret)


async def set_store_disabled(
    pool: asyncpg.Pool, merchant_id: int, store_id: int, disabled: bool
) -> None:
    """Disable (or enable) one of the merchant's stores and so every terminal in it."""
    found = await pool.fetchval(
        "UPDATE stores SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now()) END"
        " WHERE id = $1 AND merchant_id = $2 RETURNING id",
        store_id,
        merchant_id,
        disabled,
    )
    if found is None:
        raise _no_store(store_id)


async def set_terminal_disabled(
    pool: asyncpg.Pool, merchant_id: int, terminal_id: int, disabled: bool
) -> None:
    """Disable (or enable) a terminal in one of the merchant's stores."""
    found = await pool.fetchval(
        "UPDATE terminals SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now()) END"
        " WHERE id = $1 AND merchant_id = $2 RETURNING id",
        terminal_id,
        merchant_id,
        disabled,
    )
    if found is None:
        raise no_terminal(terminal_id)
