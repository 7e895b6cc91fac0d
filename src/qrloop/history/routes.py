"""Merchant routes over what happened to codes: settled redemptions, and code lookups."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Annotated, cast

import asyncpg
from litestar import Controller, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Stream

from qrloop.accounts.api_keys import KeyHolder
from qrloop.accounts.guards import current_key
from qrloop.errors import Problem, Reason
from qrloop.history import lookup, service
from qrloop.history.queries import Filters
from qrloop.history.schemas import ListFormat, LookupIn, LookupOut, RedemptionOut, Side
from qrloop.openapi import json_or_csv
from qrloop.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from qrloop.runtime import Runtime

FilterId = Annotated[int | None, Parameter(required=False, ge=1, le=2**63 - 1)]
Moment = Annotated[
    str | None,
    Parameter(
        required=False,
        max_length=40,
        schema_extra={"format": "date-time"},
        description="RFC 3339 time with its offset, e.g. 2026-12-01T00:00:00Z",
    ),
]


def _moment(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = service.utc(text.upper())
    if moment is None:
        raise Problem(Reason.BAD_REQUEST, f"{name} must be an RFC 3339 time with its offset.")
    return moment


async def _starting_with(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """`first`, then the rest; closing this closes the rest (a client that hangs up gives its
    stream's PostgreSQL connection back at once)."""
    async with contextlib.aclosing(rest):
        yield first
        async for chunk in rest:
            yield chunk


async def csv_download(pool: asyncpg.Pool, filters: Filters) -> Stream:
    """Every redemption the filters select, streamed as a CSV attachment (the API's and the
    dashboard's download)."""
    chunks = service.csv_chunks(pool, filters)
    first = await anext(chunks)  # PostgreSQL answers now, or this is a 503
    return Stream(
        _starting_with(first, chunks),
        media_type="text/csv",  # the framework adds the charset
        headers={"Content-Disposition": 'attachment; filename="redemptions.csv"'},
    )


class HistoryController(Controller):
    path = "/v1"
    tags = ["history"]
    dependencies = {"key": Provide(current_key)}

    @get(
        "/redemptions",
        summary="The caller's settled redemptions, newest first",
        operation_class=json_or_csv(service.as_csv([RedemptionOut.EXAMPLE])),
    )
    async def listed(
        self,
        key: KeyHolder,
        runtime: Runtime,
        campaign_id: FilterId = None,
        store_id: FilterId = None,
        terminal_id: FilterId = None,
        side: Side | None = None,
        since: Moment = None,
        until: Moment = None,
        format: ListFormat = ListFormat.JSON,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Response[Page[RedemptionOut]]:
        """Redemptions of the caller's campaigns (`side=issuer`), at its stores
        (`side=acceptor`), or both (no `side`), filtered by campaign, store, terminal and time
        (`since` inclusive, `until` exclusive). `format=csv` streams every matching row (no
        pages: `limit` and `cursor` are for JSON), however many months they span."""
        filters = Filters(
            merchant_id=key.merchant_id,
            side=side,
            campaign_id=campaign_id,
            store_id=store_id,
            terminal_id=terminal_id,
            since=_moment("since", since),
            until=_moment("until", until),
        )
        if format is ListFormat.JSON:
            return Response(await service.page(runtime.pool, filters, cursor, limit))
        # The annotation names the JSON page for the document, which json_or_csv completes.
        return cast("Response[Page[RedemptionOut]]", await csv_download(runtime.pool, filters))

    @get("/redemptions/{redemption_id:str}", summary="One redemption")
    async def one(self, redemption_id: str, key: KeyHolder, runtime: Runtime) -> RedemptionOut:
        """`campaign-serial-use`, as the till answered it; its issuer and its acceptor see it,
        for anyone else it is not found."""
        return await service.get(runtime.pool, key.merchant_id, redemption_id)

    @post(
        "/codes/lookup",
        status_code=200,
        tags=["lookup"],
        summary="What became of a code: its campaign, state and every use",
    )
    async def lookup(self, data: LookupIn, key: KeyHolder, runtime: Runtime) -> LookupOut:
        """For the code's issuer and acceptors; any other merchant is answered 404 as for a
        code of no campaign. The code goes in the body: it is redeemable, and URLs are logged.
        Each API key may make QRLOOP_LOOKUPS_PER_KEY_MINUTE lookups a minute (429 after)."""
        settings = runtime.settings
        await lookup.count(runtime.redis, key.key_id, settings.lookups_per_key_minute)
        return await lookup.lookup(
            runtime.pool,
            runtime.redis,
            runtime.keys.verifier,
            settings.partitions,
            key.merchant_id,
            data.code,
        )
