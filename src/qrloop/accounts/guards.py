"""Who is calling: a merchant by API key, or a terminal by access token."""

from __future__ import annotations

import hmac
from typing import Any

import asyncpg
from litestar import Request

from qrloop.accounts import api_keys
from qrloop.accounts.tokens import InvalidToken, TerminalClaims, invalid_token
from qrloop.bearer import credential_of
from qrloop.errors import Problem, Reason
from qrloop.keys import Keys

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def missing_credential() -> Problem:
    return Problem(
        Reason.UNAUTHORIZED, "Send `Authorization: Bearer <credential>`.", headers=_CHALLENGE
    )


def bearer(request: Request[Any, Any, Any]) -> str:
    """The bearer credential of the request, or 401."""
    credential = credential_of(request.headers.get("authorization", ""))
    if credential is None:
        raise missing_credential()
    return credential


async def current_key(request: Request[Any, Any, Any], pool: asyncpg.Pool) -> api_keys.KeyHolder:
    """The API key the request carries and its merchant, or 401."""
    holder = await api_keys.holder_of(pool, bearer(request))
    if holder is None:
        raise Problem(Reason.UNAUTHORIZED, "Unknown or revoked API key.", headers=_CHALLENGE)
    return holder


async def current_merchant(request: Request[Any, Any, Any], pool: asyncpg.Pool) -> int:
    """The merchant id behind the API key, or 401."""
    return (await current_key(request, pool)).merchant_id


def current_terminal(request: Request[Any, Any, Any], keys: Keys) -> TerminalClaims:
    """The terminal behind the access token, or 401."""
    try:
        return keys.tokens.verify(bearer(request))
    except InvalidToken:
        raise invalid_token() from None


def require_bearer(request: Request[Any, Any, Any], expected: str) -> None:
    """401 unless the request's bearer credential is `expected` (compared in constant time)."""
    if not hmac.compare_digest(bearer(request).encode(), expected.encode()):
        raise Problem(Reason.UNAUTHORIZED, "Wrong bearer credential.", headers=_CHALLENGE)
