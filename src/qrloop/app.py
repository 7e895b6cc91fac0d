"""The Litestar application: `create_app()` wires every area's routes to one Runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

import asyncpg
from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from litestar.types import ControllerRouterHandler
from redis.exceptions import RedisError

from qrloop import db, liveness, metrics, redis_client
from qrloop.accounts.guards import require_bearer
from qrloop.accounts.routes import AccountsController, exchange_token
from qrloop.agreements.routes import AgreementsController
from qrloop.claim.routes import ClaimPages, PoolsController
from qrloop.dashboard.routes import dashboard_router
from qrloop.db import create_pool
from qrloop.errors import PROBLEM_MEDIA_TYPE, Problem, Reason
from qrloop.history.routes import HistoryController
from qrloop.issuance import dependencies as issuance
from qrloop.issuance.routes import IssuanceController
from qrloop.keys import Keys
from qrloop.openapi import METRICS_TOKEN_IF_SET, answered, document, openapi_config
from qrloop.redemption import dependencies as redemption
from qrloop.redemption.cluster import hot_path_pipes
from qrloop.redemption.fast import ASGIApp, with_fast_redeem
from qrloop.redemption.routes import TillController
from qrloop.redemption.timing import timed
from qrloop.runtime import Runtime
from qrloop.settings import Settings, load
from qrloop.settlement.routes import SettlementController
from qrloop.settlement.state import missing_epochs
from qrloop.settlement.worker import settlement_gauges
from qrloop.till.routes import TillPages, TillPairingController, redeem_frame
from qrloop.web.docs import static_files
from qrloop.webhooks import service as webhooks
from qrloop.webhooks.routes import WebhooksController

log = logging.getLogger("qrloop.app")

# Room for the largest request, a void of 10,000 codes of the longest form (200 characters):
# about 2 MB. Larger bodies answer 413 before they are read to the end.
MAX_BODY_BYTES = 3 * 1024 * 1024

_BIGINT = range(-(2**63), 2**63)

# Connection-level failures of the state stores: the answer is 503, never a 500.
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (RedisError, *db.UNAVAILABLE_ERRORS)


async def build_runtime(settings: Settings) -> Runtime:
    assert settings.database_url and settings.redis_url, "settings must name both stores"
    pool = await create_pool(
        settings.database_url, settings.db_pool_size, statement_cache=settings.statement_cache
    )
    tls = redis_client.Tls.of(settings)
    client = await redis_client.connect(
        settings.redis_url,
        tls,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        max_connections=256,
    )
    pipe, writes = hot_path_pipes(settings, redis_client.is_cluster(client))
    return Runtime(
        settings=settings, pool=pool, redis=client, pipe=pipe, writes=writes, keys=Keys(settings)
    )


def problem_response(problem: Problem) -> Response[Any]:
    return Response(
        problem.body(),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


def _route(request: Request[Any, Any, Any]) -> str:
    """The matched route's template (`/c/{token}`), never the path a client sent."""
    template: str = request.scope.get("path_template") or metrics.UNMATCHED
    return template


def on_problem(request: Request[Any, Any, Any], problem: Problem) -> Response[Any]:
    metrics.count_answer(_route(request), problem.reason.value)
    return problem_response(problem)


def on_validation(request: Request[Any, Any, Any], error: ValidationException) -> Response[Any]:
    detail = error.detail or "The request does not match the schema."
    return on_problem(request, Problem(Reason.BAD_REQUEST, detail, errors=error.extra or []))


_HTTP_REASONS = {
    401: Reason.UNAUTHORIZED,
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    409: Reason.CONFLICT,
    413: Reason.PAYLOAD_TOO_LARGE,
    429: Reason.RATE_LIMITED,
    503: Reason.UNAVAILABLE,
}


def on_http(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    reason = _HTTP_REASONS.get(error.status_code)
    if reason is None:
        reason = Reason.BAD_REQUEST if error.status_code < 500 else Reason.INTERNAL
    return on_problem(request, Problem(reason, error.detail))


def on_unavailable(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.warning("state store unavailable on %s: %s", _route(request), type(error).__name__)
    return on_problem(
        request,
        Problem(
            Reason.UNAVAILABLE,
            "A state store cannot answer right now.",
            headers={"Retry-After": "1"},
        ),
    )


def on_recursion(request: Request[Any, Any, Any], error: RecursionError) -> Response[Any]:
    """The framework decodes JSON with msgspec, which refuses nesting deeper than Python's
    recursion limit with a RecursionError: the request's fault, so 400. Any other is ours."""
    if "deserializing" not in str(error):
        return on_unexpected(request, error)
    return on_problem(request, Problem(Reason.BAD_REQUEST, "The JSON is nested too deeply."))


def ids_in_range(request: Request[Any, Any, Any]) -> None:
    """Ids in paths are PostgreSQL bigints: a larger number names nothing (and the driver
    would refuse to send it, a 500)."""
    if any(
        isinstance(value, int) and value not in _BIGINT for value in request.path_params.values()
    ):
        raise Problem(Reason.NOT_FOUND, "No such id.")


def on_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.exception("unexpected error on %s", _route(request), exc_info=error)
    return on_problem(request, Problem(Reason.INTERNAL, "Something went wrong on our side."))


@get(
    "/health/live",
    tags=["operations"],
    media_type=MediaType.JSON,
    summary="Whether the process answers",
    responses=answered({"status": "ok"}),
)
async def live() -> Response[dict[str, str]]:
    """The process answers, with the start nonce `serve` gave it (so `serve` knows its own)."""
    nonce = liveness.own_nonce()
    headers = {liveness.START_NONCE_HEADER: nonce} if nonce else None
    return Response({"status": "ok"}, headers=headers)


@get(
    "/health/ready",
    tags=["operations"],
    media_type=MediaType.JSON,
    summary="Whether the process can serve: its stores answer, no partition lost its state",
    responses=answered({"status": "ready"}),
)
async def ready(runtime: Runtime) -> dict[str, str]:
    """PostgreSQL and Redis answer (on a cluster, each primary that holds a partition), and
    no partition has lost its state."""
    await runtime.pool.fetchval("SELECT 1")
    lost = await missing_epochs(runtime.redis, runtime.settings.partitions)
    if lost:
        raise Problem(Reason.UNAVAILABLE, f"Partitions {lost} lost their state; run reconcile.")
    return {"status": "ready"}


@get(
    "/metrics",
    tags=["operations"],
    media_type=metrics.CONTENT_TYPE,
    summary="Prometheus metrics",
    security=METRICS_TOKEN_IF_SET,
    responses=answered(metrics.EXAMPLE, metrics.CONTENT_TYPE),
)
async def prometheus(request: Request[Any, Any, Any], runtime: Runtime) -> bytes:
    """Prometheus metrics of every qrloop process sharing this host's metrics folder; with
    QRLOOP_METRICS_TOKEN set, only for `Authorization: Bearer <that token>`."""
    if runtime.settings.metrics_token:
        require_bearer(request, runtime.settings.metrics_token)
    backlog, dead = await settlement_gauges(runtime.redis, runtime.settings.partitions)
    return metrics.render(backlog, dead, await webhooks.delivery_counts(runtime.pool))


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def _pool(runtime: Runtime) -> asyncpg.Pool:
    return runtime.pool


def _settings(runtime: Runtime) -> Settings:
    return runtime.settings


def _keys(runtime: Runtime) -> Keys:
    return runtime.keys


# The infrastructure, whole or by part, for any route or area provider to ask for by name.
_INFRASTRUCTURE = {
    "runtime": Provide(_runtime, sync_to_thread=False),
    "pool": Provide(_pool, sync_to_thread=False),
    "settings": Provide(_settings, sync_to_thread=False),
    "keys": Provide(_keys, sync_to_thread=False),
}


def create_app(
    settings: Settings | None = None, extra_handlers: Sequence[ControllerRouterHandler] = ()
) -> Litestar:
    """The ASGI application; settings default to the environment. `extra_handlers` join the
    app's own routes (the benchmarks add comparison endpoints this way)."""
    settings = settings or load()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = await build_runtime(settings)
        app.state.runtime = runtime
        try:
            with issuance.serving(app.state):
                async with redemption.serving(
                    app.state, settings, runtime.pool, runtime.pipe, runtime.keys, runtime.writes
                ):
                    yield
        finally:
            await runtime.pipe.close()
            if runtime.writes is not runtime.pipe:
                await runtime.writes.close()
            await runtime.redis.aclose()
            await runtime.pool.close()

    app = Litestar(
        route_handlers=[
            AccountsController,
            exchange_token,
            IssuanceController,
            AgreementsController,
            TillController,
            ClaimPages,
            PoolsController,
            SettlementController,
            WebhooksController,
            HistoryController,
            dashboard_router(),
            TillPairingController,
            TillPages,
            redeem_frame,
            live,
            ready,
            prometheus,
            static_files(),
            *extra_handlers,
        ],
        dependencies=_INFRASTRUCTURE,
        lifespan=[lifespan],
        exception_handlers={
            Problem: on_problem,
            ValidationException: on_validation,
            NotAuthorizedException: on_http,
            NotFoundException: on_http,
            MethodNotAllowedException: on_http,
            HTTPException: on_http,
            **dict.fromkeys(_UNAVAILABLE_ERRORS, on_unavailable),
            RecursionError: on_recursion,
            Exception: on_unexpected,
        },
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        before_request=ids_in_range,
        debug=False,
    )
    document(app)
    return app


def create_asgi(extra_handlers: Sequence[ControllerRouterHandler] = ()) -> ASGIApp:
    """What `qrloop api` serves: the app, with the fast redeem path in front unless disabled."""
    settings = load()
    app = create_app(settings, extra_handlers)
    asgi = cast(ASGIApp, app)
    if not settings.fast_path:
        return timed(asgi)

    return timed(with_fast_redeem(asgi, partial(redemption.provide_till, app.state)))
