"""Merchant API keys: several per merchant, each labelled, listed without its secret, revoked
one by one. Every call authenticated by a key reads PostgreSQL, so a revocation is immediate."""

from __future__ import annotations

from typing import NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from qrloop.accounts.schemas import ApiKeyOut, NewApiKey
from qrloop.accounts.secrets import API_KEY_PREFIX, digest, new_secret
from qrloop.errors import Problem, Reason
from qrloop.pagination import Page, newest_page, page_sql

INITIAL_LABEL = "initial"
# Shown to people to tell keys apart: the fixed prefix and 7 random characters (42 of the 256
# random bits), far too few to authenticate with.
PREFIX_LENGTH = len(API_KEY_PREFIX) + 7
_COLUMNS = "id, prefix, label, created_at, last_used_at, revoked_at"


async def create(
    database: asyncpg.Pool | PoolConnectionProxy, merchant_id: int, label: str
) -> NewApiKey:
    """A new live key for the merchant (`database` may be a connection in a transaction); the
    key itself is returned this once."""
    api_key, key_digest = new_secret(API_KEY_PREFIX)
    prefix = api_key[:PREFIX_LENGTH]
    row = await database.fetchrow(
        "INSERT INTO api_keys (merchant_id, digest, label, prefix) VALUES ($1, $2, $3, $4)"
        " RETURNING id, created_at",
        merchant_id,
        key_digest,
        label,
        prefix,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return NewApiKey(
        id=row["id"], prefix=prefix, label=label, created_at=row["created_at"], api_key=api_key
    )


class KeyHolder(NamedTuple):
    """A live API key (by id, never its secret) and the merchant it speaks for."""

    key_id: int
    merchant_id: int


async def holder_of(pool: asyncpg.Pool, api_key: str) -> KeyHolder | None:
    """This live API key and its merchant, if the key is one.

    The same statement stamps the key's `last_used_at`, but only when the stamp is a minute
    old: a busy key costs one row write a minute, not one per request. The condition is on the
    updated row, so concurrent requests re-check it after the first one's write and skip.
    """
    row = await pool.fetchrow(
        "WITH live AS ("
        "  SELECT id, merchant_id FROM api_keys WHERE digest = $1 AND revoked_at IS NULL"
        "), touched AS ("
        "  UPDATE api_keys k SET last_used_at = now() FROM live WHERE k.id = live.id"
        "  AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')"
        ") SELECT id, merchant_id FROM live",
        digest(api_key),
    )
    return None if row is None else KeyHolder(row["id"], row["merchant_id"])


async def listed(pool: asyncpg.Pool, merchant_id: int) -> list[ApiKeyOut]:
    """All the merchant's keys, oldest first, revoked ones included; never a key or its digest
    (the operator's `qrloop merchants keys list`)."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE merchant_id = $1 ORDER BY id",
        merchant_id,
    )
    return [ApiKeyOut(**row) for row in rows]


API_KEYS_PAGE = page_sql(f"SELECT {_COLUMNS} FROM api_keys")


async def page(
    pool: asyncpg.Pool, merchant_id: int, cursor: str | None, limit: int
) -> Page[ApiKeyOut]:
    """A page of the merchant's keys, newest first, revoked ones included."""
    return await newest_page(
        pool, API_KEYS_PAGE, merchant_id, cursor, limit, out=lambda row: ApiKeyOut(**row)
    )


async def owner_of(pool: asyncpg.Pool, key_id: int) -> int | None:
    """The merchant a key belongs to, for the operator's `qrloop merchants keys revoke`."""
    merchant_id: int | None = await pool.fetchval(
        "SELECT merchant_id FROM api_keys WHERE id = $1", key_id
    )
    return merchant_id


async def revoke(pool: asyncpg.Pool, merchant_id: int, key_id: int) -> ApiKeyOut:
    """Revoke one of the merchant's keys (again: the same answer). The last live key is kept:
    revoking it would lock the merchant out of the API, so create its successor first."""
    async with pool.acquire() as connection, connection.transaction():
        # Lock the live keys, so two revocations at once cannot each leave the other's as last.
        live = await connection.fetch(
            "SELECT id FROM api_keys WHERE merchant_id = $1 AND revoked_at IS NULL"
            " ORDER BY id FOR UPDATE",
            merchant_id,
        )
        if [row["id"] for row in live] == [key_id]:
            raise Problem(
                Reason.CONFLICT,
                f"API key {key_id} is the last live key of this account; create another first.",
            )
        row = await connection.fetchrow(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
            f" WHERE id = $1 AND merchant_id = $2 RETURNING {_COLUMNS}",
            key_id,
            merchant_id,
        )
    if row is None:
        raise Problem(Reason.NOT_FOUND, f"No API key {key_id} in this account.")
    return ApiKeyOut(**row)
