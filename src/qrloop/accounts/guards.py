"""Who is calling: a merchant by API key, or a terminal by access token."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from qrloop.accounts.service import merchant_for_api_key
from qrloop.accounts.tokens import InvalidToken, TerminalClaims
from qrloop.errors import Problem, Reason
from qrloop.runtime import Runtime

_BEARER = "bearer "


def bearer(request: Request[object, object, State]) -> str:
    """The bearer credential of the request, or 401."""
    header = request.headers.get("authorization", "")
    if header[: len(_BEARER)].lower() != _BEARER or not header[len(_BEARER) :].strip():
        raise Problem(
            Reason.UNAUTHORIZED,
            "Send `Authorization: Bearer <credential>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return header[len(_BEARER) :].strip()


async def current_merchant(request: Request[object, object, State], runtime: Runtime) -> int:
    """The merchant id behind the API key, or 401."""
    merchant_id = await merchant_for_api_key(runtime.pool, bearer(request))
    if merchant_id is None:
        raise Problem(
            Reason.UNAUTHORIZED,
            "Unknown or revoked API key.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return merchant_id


def current_terminal(request: Request[object, object, State], runtime: Runtime) -> TerminalClaims:
    """The terminal behind the access token, or 401."""
    try:
        return runtime.tokens.verify(bearer(request))
    except InvalidToken:
        raise Problem(
            Reason.UNAUTHORIZED,
            "Invalid or expired terminal token; exchange the terminal secret for a new one.",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
