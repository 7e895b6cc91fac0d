"""Accounts in PostgreSQL: every query is scoped to the merchant that asks."""

from __future__ import annotations

import hmac

import asyncpg

from qrloop.accounts.secrets import API_KEY_PREFIX, TERMINAL_SECRET_PREFIX, digest, new_secret
from qrloop.errors import Problem, Reason


async def create_merchant(pool: asyncpg.Pool, name: str) -> tuple[int, str]:
    """A new merchant and its first API key (returned once, stored as a digest)."""
    api_key, key_digest = new_secret(API_KEY_PREFIX)
    async with pool.acquire() as connection, connection.transaction():
        merchant_id: int = await connection.fetchval(
            "INSERT INTO merchants (name) VALUES ($1) RETURNING id", name
        )
        await connection.execute(
            "INSERT INTO api_keys (merchant_id, digest) VALUES ($1, $2)", merchant_id, key_digest
        )
    return merchant_id, api_key


async def merchant_for_api_key(pool: asyncpg.Pool, api_key: str) -> int | None:
    """The merchant owning this live API key, if any."""
    merchant_id: int | None = await pool.fetchval(
        "SELECT merchant_id FROM api_keys WHERE digest = $1 AND revoked_at IS NULL",
        digest(api_key),
    )
    return merchant_id


async def create_store(pool: asyncpg.Pool, merchant_id: int, name: str) -> int:
    store_id: int = await pool.fetchval(
        "INSERT INTO stores (merchant_id, name) VALUES ($1, $2) RETURNING id", merchant_id, name
    )
    return store_id


async def create_terminal(
    pool: asyncpg.Pool, merchant_id: int, store_id: int, name: str
) -> tuple[int, str]:
    """A terminal in one of the merchant's own stores, with its secret (returned once)."""
    secret, secret_digest = new_secret(TERMINAL_SECRET_PREFIX)
    terminal_id: int | None = await pool.fetchval(
        "INSERT INTO terminals (store_id, name, secret_digest)"
        " SELECT id, $3, $4 FROM stores WHERE id = $1 AND merchant_id = $2 AND disabled_at IS NULL"
        " RETURNING id",
        store_id,
        merchant_id,
        name,
        secret_digest,
    )
    if terminal_id is None:
        raise Problem(Reason.NOT_FOUND, f"No store {store_id} in this account.")
    return terminal_id, secret


async def authenticate_terminal(
    pool: asyncpg.Pool, terminal_id: int, secret: str
) -> tuple[int, int]:
    """(store_id, merchant_id) of an enabled terminal whose secret matches."""
    row = await pool.fetchrow(
        "SELECT t.secret_digest, t.store_id, s.merchant_id FROM terminals t"
        " JOIN stores s ON s.id = t.store_id"
        " WHERE t.id = $1 AND t.disabled_at IS NULL AND s.disabled_at IS NULL",
        terminal_id,
    )
    # Compare even when the terminal is unknown, so timing does not reveal which ids exist.
    expected = row["secret_digest"] if row else b"\0" * 32
    if not hmac.compare_digest(expected, digest(secret)) or row is None:
        raise Problem(Reason.UNAUTHORIZED, "Unknown terminal or wrong secret.")
    return row["store_id"], row["merchant_id"]


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
        raise Problem(Reason.NOT_FOUND, f"No store {store_id} in this account.")


async def set_terminal_disabled(
    pool: asyncpg.Pool, merchant_id: int, terminal_id: int, disabled: bool
) -> None:
    """Disable (or enable) a terminal in one of the merchant's stores."""
    found = await pool.fetchval(
        "UPDATE terminals t SET disabled_at = CASE WHEN $3 THEN coalesce(t.disabled_at, now()) END"
        " FROM stores s WHERE t.id = $1 AND s.id = t.store_id AND s.merchant_id = $2"
        " RETURNING t.id",
        terminal_id,
        merchant_id,
        disabled,
    )
    if found is None:
        raise Problem(Reason.NOT_FOUND, f"No terminal {terminal_id} in this account.")
