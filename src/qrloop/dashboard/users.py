"""Dashboard users and their invitations, in PostgreSQL; every query but the login's is scoped
to the merchant that asks.

An invitation is the only way to a password: `qrloop merchants create` invites the owner, and
the owner invites the others. Its link holds a 256-bit token of which only the SHA-256 is kept.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from email_validator import EmailNotValidError, validate_email

from qrloop.accounts import service as accounts
from qrloop.accounts.secrets import digest
from qrloop.errors import Problem, Reason

INVITATION_PATH = "/dashboard/set-password/"


class Role(StrEnum):
    """What a person may do: an owner everything, a manager campaigns, orders and stores, a
    viewer read reports."""

    OWNER = "owner"
    MANAGER = "manager"
    VIEWER = "viewer"

    def covers(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 0, Role.MANAGER: 1, Role.OWNER: 2}


@dataclass(frozen=True, slots=True)
class User:
    id: int
    merchant_id: int
    merchant_name: str
    email: str
    role: Role
    active: bool  # has set a password
    sessions_since: datetime
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True, slots=True)
class Invitation:
    user_id: int
    email: str
    token: str  # shown once, in the link
    expires_at: datetime

    def url(self, base_url: str) -> str:
        return base_url + INVITATION_PATH + self.token


@dataclass(frozen=True, slots=True)
class NewMerchant:
    merchant_id: int
    api_key: str
    owner: Invitation


_USER = (
    "SELECT u.id, u.merchant_id, m.name AS merchant_name, u.email, u.role,"
    " u.password_hash IS NOT NULL AS active, u.sessions_since, u.created_at, u.last_login_at"
    " FROM dashboard_users u JOIN merchants m ON m.id = u.merchant_id"
)


def _user(row: asyncpg.Record) -> User:
    return User(**{**row, "role": Role(row["role"])})


def normal_email(text: str) -> str:
    """The email as stored: checked for its form, lower-cased whole (one person, any case)."""
    try:
        found = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise Problem(Reason.BAD_REQUEST, f"Not an email address: {error}") from None
    return found.normalized.lower()


async def by_id(pool: asyncpg.Pool, user_id: int) -> User | None:
    row = await pool.fetchrow(f"{_USER} WHERE u.id = $1", user_id)
    return None if row is None else _user(row)


async def credentials(pool: asyncpg.Pool, email: str) -> tuple[int, str | None] | None:
    """The user id and password hash behind an email typed at login (any case), if any."""
    row = await pool.fetchrow(
        "SELECT id, password_hash FROM dashboard_users WHERE email = lower($1)", email.strip()
    )
    return None if row is None else (row["id"], row["password_hash"])


async def logged_in(pool: asyncpg.Pool, user_id: int, rehashed: str | None) -> None:
    """Stamp the login; store the password's new hash when its parameters changed."""
    await pool.execute(
        "UPDATE dashboard_users SET last_login_at = now(),"
        " password_hash = coalesce($2, password_hash) WHERE id = $1",
        user_id,
        rehashed,
    )


async def listed(pool: asyncpg.Pool, merchant_id: int) -> list[User]:
    """The merchant's people, owners first, then by when they were invited."""
    rows = await pool.fetch(
        f"{_USER} WHERE u.merchant_id = $1"
        " ORDER BY u.role = 'owner' DESC, u.role = 'manager' DESC, u.id",
        merchant_id,
    )
    return [_user(row) for row in rows]


async def invite(
    database: asyncpg.Pool | PoolConnectionProxy,
    merchant_id: int,
    email: str,
    role: Role | None,
    hours: int,
    *,
    reset: bool = False,
) -> Invitation:
    """A one-time link for `email` to set a password and join the merchant as `role` (None:
    an owner if new, else their role unchanged); a person invited before and not yet joined
    gets a new link (the older ones stop working). With `reset` (the operator's `qrloop
    merchants invite`), a member who has a password gets one too, to set a new one: the way
    back in for a locked-out owner."""
    email = normal_email(email)
    token = secrets.token_urlsafe(32)
    expires = timedelta(hours=hours)
    async with _transaction(database) as connection:
        row = await connection.fetchrow(
            "INSERT INTO dashboard_users (merchant_id, email, role)"
            " VALUES ($1, $2, coalesce($3, 'owner'))"
            " ON CONFLICT (email) DO UPDATE SET role = coalesce($3, dashboard_users.role)"
            "  WHERE dashboard_users.merchant_id = excluded.merchant_id"
            "  AND (dashboard_users.password_hash IS NULL OR $4)"
            " RETURNING id",
            merchant_id,
            email,
            role and role.value,
            reset,
        )
        if row is None:
            raise Problem(Reason.CONFLICT, f"{email} already has a dashboard account.")
        await connection.execute(
            "UPDATE dashboard_invitations SET expires_at = least(expires_at, now())"
            " WHERE user_id = $1 AND used_at IS NULL",
            row["id"],
        )
        expires_at = await connection.fetchval(
            "INSERT INTO dashboard_invitations (user_id, digest, expires_at)"
            " VALUES ($1, $2, now() + $3) RETURNING expires_at",
            row["id"],
            digest(token),
            expires,
        )
    return Invitation(row["id"], email, token, expires_at)


async def invited_email(pool: asyncpg.Pool, token: str) -> str | None:
    """The email an unused, unexpired invitation is for; None for any other token."""
    email: str | None = await pool.fetchval(
        "SELECT u.email FROM dashboard_invitations i JOIN dashboard_users u ON u.id = i.user_id"
        " WHERE i.digest = $1 AND i.used_at IS NULL AND i.expires_at > now()",
        digest(token),
    )
    return email


async def accept(pool: asyncpg.Pool, token: str, password_hash: str) -> int | None:
    """Spend the invitation on this password: the user's id, or None when the token is
    unknown, used or expired. Every session the user had ends."""
    async with pool.acquire() as connection, connection.transaction():
        user_id: int | None = await connection.fetchval(
            "UPDATE dashboard_invitations SET used_at = now()"
            " WHERE digest = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
            digest(token),
        )
        if user_id is not None:
            await connection.execute(
                "UPDATE dashboard_users SET password_hash = $2, sessions_since = now()"
                " WHERE id = $1",
                user_id,
                password_hash,
            )
    return user_id


async def password_hash(pool: asyncpg.Pool, user_id: int) -> str | None:
    stored: str | None = await pool.fetchval(
        "SELECT password_hash FROM dashboard_users WHERE id = $1", user_id
    )
    return stored


async def change_password(pool: asyncpg.Pool, user_id: int, new_hash: str) -> datetime:
    """The new password; every session the user had ends. Answers the new `sessions_since`."""
    since: datetime = await pool.fetchval(
        "UPDATE dashboard_users SET password_hash = $2, sessions_since = now() WHERE id = $1"
        " RETURNING sessions_since",
        user_id,
        new_hash,
    )
    return since


async def change_role(pool: asyncpg.Pool, merchant_id: int, user_id: int, role: Role) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await _keep_an_owner(connection, merchant_id, user_id, role)
        done = await connection.fetchval(
            "UPDATE dashboard_users SET role = $3 WHERE id = $1 AND merchant_id = $2"
            " RETURNING true",
            user_id,
            merchant_id,
            role.value,
        )
    if not done:
        raise _no_user(user_id)


async def remove(pool: asyncpg.Pool, merchant_id: int, user_id: int) -> None:
    """The person can no longer log in; their open sessions are refused at their next
    request."""
    async with pool.acquire() as connection, connection.transaction():
        await _keep_an_owner(connection, merchant_id, user_id, None)
        done = await connection.fetchval(
            "DELETE FROM dashboard_users WHERE id = $1 AND merchant_id = $2 RETURNING true",
            user_id,
            merchant_id,
        )
    if not done:
        raise _no_user(user_id)


async def _keep_an_owner(
    connection: PoolConnectionProxy, merchant_id: int, user_id: int, role: Role | None
) -> None:
    """409 if making `user_id` a `role` (None: removing them) would leave the merchant without
    an owner who can log in. The owners are locked, so two owners demoting each other at once
    cannot both succeed."""
    owners = await connection.fetch(
        "SELECT id FROM dashboard_users WHERE merchant_id = $1 AND role = 'owner'"
        " AND password_hash IS NOT NULL ORDER BY id FOR UPDATE",
        merchant_id,
    )
    if role is not Role.OWNER and [row["id"] for row in owners] == [user_id]:
        raise Problem(
            Reason.CONFLICT, "The account's last owner stays: make someone else owner first."
        )


def _no_user(user_id: int) -> Problem:
    return Problem(Reason.NOT_FOUND, f"No dashboard user {user_id} in this account.")


async def create_merchant(
    pool: asyncpg.Pool, name: str, owner_email: str, hours: int
) -> NewMerchant:
    """A merchant, its first API key and its owner's invitation, all or nothing."""
    async with pool.acquire() as connection, connection.transaction():
        merchant_id, api_key = await accounts.insert_merchant(connection, name)
        owner = await invite(connection, merchant_id, owner_email, Role.OWNER, hours)
    return NewMerchant(merchant_id, api_key, owner)


@asynccontextmanager
async def _transaction(
    database: asyncpg.Pool | PoolConnectionProxy,
) -> AsyncIterator[PoolConnectionProxy]:
    """A connection in a transaction: the pool's, or a savepoint in the caller's."""
    if isinstance(database, asyncpg.Pool):
        async with database.acquire() as connection, connection.transaction():
            yield connection
    else:
        async with database.transaction():
            yield database
