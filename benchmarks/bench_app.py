"""qrloop's own app plus two comparison routes, served by `benchmarks/redeem.py`.

`create()` builds the real application with `qrloop.app.create_app()` and registers on the
same app, behind the same server, middleware and exception handlers:

* ``POST /bench/noop``: decodes the redeem body and answers a small JSON object. The floor
  of the stack: HTTP parsing, routing, body validation, JSON encoding.
* ``POST /bench/pg-redeem``: the till's redemption done PostgreSQL-only, as a user might
  build it: authenticate the terminal's bearer token and verify the code exactly as
  /v1/redeem does, then one ``UPDATE bench_codes ... WHERE ... AND redeemed_at IS NULL
  RETURNING`` on the app's own asyncpg pool; 200 when it updated a row, else 409.

The table ``bench_codes`` is created and filled by ``redeem.py`` (see `BENCH_CODES_DDL`).
Nothing here is part of qrloop; it only reads the app's runtime (``app.state.runtime``): its
asyncpg pool and its code and token verifiers.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import MediaType, Request, post
from litestar.datastructures import State

import qrloop.app
from qrloop.codes.format import InvalidCode, RetiredKey, RevokedKey, parse_input
from qrloop.errors import Problem, Reason

try:  # the redeem body as the till sends it
    from qrloop.redemption.schemas import RedeemIn
except ImportError:  # pragma: no cover - the hot path is being rewritten; keep an equivalent
    from typing import Annotated

    class RedeemIn(msgspec.Struct, forbid_unknown_fields=True):  # type: ignore[no-redef]
        code: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
        nonce: Annotated[
            str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
        ]


try:
    from qrloop.accounts.guards import current_terminal
except ImportError:  # pragma: no cover
    current_terminal = None  # type: ignore[assignment]

BENCH_CODES_DDL = """
CREATE TABLE IF NOT EXISTS bench_codes (
    campaign_id  bigint NOT NULL,
    serial       bigint NOT NULL,
    redeemed_at  timestamptz,
    terminal_id  bigint,
    store_id     bigint,
    PRIMARY KEY (campaign_id, serial)
)
"""

_PG_REDEEM = (
    "UPDATE bench_codes SET redeemed_at = now(), terminal_id = $3, store_id = $4"
    " WHERE campaign_id = $1 AND serial = $2 AND redeemed_at IS NULL"
    " RETURNING redeemed_at"
)
_INVALID = "This is not a valid code."


class NoopOut(msgspec.Struct):
    status: str
    nonce: str


class PgRedeemOut(msgspec.Struct):
    status: str
    redemption_id: str
    campaign_id: int
    serial: int


def _runtime(request: Request[Any, Any, State]) -> Any:
    return request.app.state.runtime


def _keys(runtime: Any) -> Any:
    """Where the runtime keeps `verifier` and `tokens`: `runtime.keys` or the runtime itself."""
    return getattr(runtime, "keys", runtime)


def _terminal(request: Request[Any, Any, State], runtime: Any) -> Any:
    """The till's claims from its bearer token, as the real route's guard gives them."""
    if current_terminal is not None:
        return current_terminal(request, _keys(runtime))
    header = request.headers.get("authorization", "")  # pragma: no cover - fallback
    try:
        return _keys(runtime).tokens.verify(header.removeprefix("Bearer ").strip())
    except Exception:
        raise Problem(Reason.UNAUTHORIZED, "Invalid terminal token.") from None


@post("/bench/noop", status_code=200, media_type=MediaType.JSON, include_in_schema=False)
async def noop(data: RedeemIn) -> NoopOut:
    """Decode the redeem body, do nothing, answer."""
    return NoopOut(status="ok", nonce=data.nonce)


@post("/bench/pg-redeem", status_code=200, media_type=MediaType.JSON, include_in_schema=False)
async def pg_redeem(data: RedeemIn, request: Request[Any, Any, State]) -> PgRedeemOut:
    """Authenticate, verify the code, consume it with one UPDATE ... RETURNING."""
    runtime = _runtime(request)
    terminal = _terminal(request, runtime)
    try:
        ref = _keys(runtime).verifier.verify(parse_input(data.code))
    except (InvalidCode, RevokedKey, RetiredKey):
        raise Problem(Reason.INVALID, _INVALID) from None
    row = await runtime.pool.fetchrow(
        _PG_REDEEM, ref.campaign_id, ref.serial, terminal.terminal_id, terminal.store_id
    )
    if row is None:
        raise Problem(Reason.ALREADY_REDEEMED, "This code has already been redeemed.")
    return PgRedeemOut(
        status="redeemed",
        redemption_id=str(uuid.uuid4()),
        campaign_id=ref.campaign_id,
        serial=ref.serial,
    )


def create() -> Any:
    """What `qrloop api` serves, with the two comparison routes on the same Litestar app."""
    return qrloop.app.create_asgi(extra_handlers=[noop, pg_redeem])
