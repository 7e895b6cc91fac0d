"""Consumer pages (`/c/...`, `/p/...`) and the merchant's pool routes."""

from __future__ import annotations

from html import escape
from typing import Annotated

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect

from qrloop.accounts.guards import current_merchant
from qrloop.claim import pages, service, state
from qrloop.claim.consumers import consumer_hash
from qrloop.codes.format import CodeRef, Signer, to_typed
from qrloop.codes.render import svg_markup
from qrloop.errors import Problem
from qrloop.runtime import Runtime
from qrloop.text import text

COOKIE = "qrloop_claim"
_TAKEN = (
    "<p>This offer has already been claimed. If it was you, on another device, enter the"
    " same phone number or email to see it again.</p>"
)


class ClaimForm(msgspec.Struct):
    identifier: Annotated[str, text(max_length=320)]


Form = Annotated[ClaimForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


class PoolIn(msgspec.Struct, forbid_unknown_fields=True):
    order_id: Annotated[int, msgspec.Meta(ge=1)]
    per_consumer: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1


class PoolOut(msgspec.Struct):
    id: str
    url: str
    campaign_id: int
    size: int
    per_consumer: int
    handed_out: int


def _html(body: str, status: int = 200, cookie: Cookie | None = None) -> Response[str]:
    return Response(
        body, media_type=MediaType.HTML, status_code=status, cookies=[cookie] if cookie else []
    )


class ClaimPages(Controller):
    """No login: a claim link is its own credential, and a cookie remembers the claimer."""

    include_in_schema = False

    @get("/c/{token:str}")
    async def claim_page(self, token: str, request: Request, runtime: Runtime) -> Response[str]:  # type: ignore[type-arg]
        return await self._render(token, request.cookies.get(COOKIE), runtime)

    @post("/c/{token:str}/claim")
    async def claim(self, token: str, data: Form, runtime: Runtime) -> Response[str]:
        ref = service.code_of(runtime.keys.verifier, token)
        try:
            owner = await service.claim(
                runtime.redis,
                runtime.settings.partitions,
                runtime.keys.keyring,
                ref,
                data.identifier,
            )
        except Problem as refusal:
            if refusal.status >= 500:
                raise
            return await self._render(token, None, runtime, error=refusal)
        return self._to_code(token, owner, runtime)

    @get("/c/{token:str}/state", media_type=MediaType.JSON)
    async def claim_state(self, token: str, runtime: Runtime) -> dict[str, str]:
        """The live state of the code behind a claim link (nothing redeemable is revealed)."""
        ref = service.code_of(runtime.keys.verifier, token)
        found = await state.read(runtime.redis, runtime.settings.partitions, ref)
        terms = await service.offer(runtime.pool, ref.campaign_id)
        return {"state": service.consumer_state(found, terms)}

    @get("/p/{pool_id:str}")
    async def pool_page(self, pool_id: str, runtime: Runtime) -> Response[str]:
        found = await service.find_pool(runtime.pool, pool_id)
        return await self._pool_page(found, runtime)

    @post("/p/{pool_id:str}/claim")
    async def pool_claim(self, pool_id: str, data: Form, runtime: Runtime) -> Response[str]:
        """The next code of the pool for this consumer, at most `per_consumer` each."""
        found = await service.find_pool(runtime.pool, pool_id)
        try:
            who = consumer_hash(runtime.keys.keyring, data.identifier)
        except Problem as refusal:
            return await self._pool_page(found, runtime, error=refusal.detail, status=400)
        outcome, offsets = await state.next_from_pool(
            runtime.redis, pool_id, who, found.per_consumer, found.size
        )
        if outcome == "empty":
            return await self._pool_page(
                found, runtime, error="All codes have been handed out.", status=409
            )
        if outcome == "limit":
            links = "".join(
                f'<li><a href="/c/{self._token(found, offset, runtime)}">Your code {n}</a></li>'
                for n, offset in enumerate(offsets, start=1)
            )
            note = f"You already have {len(offsets)}; that is the most one person may take."
            return await self._pool_page(
                found, runtime, error=note, status=409, extra=f"<ul>{links}</ul>"
            )
        token = self._token(found, offsets[0], runtime)
        ref = service.code_of(runtime.keys.verifier, token)
        owner = await service.claim(
            runtime.redis, runtime.settings.partitions, runtime.keys.keyring, ref, data.identifier
        )
        return self._to_code(token, owner, runtime)

    def _to_code(self, token: str, owner: str, runtime: Runtime) -> Response[str]:
        value = service.ownership_cookie(runtime.keys.keyring, token, owner) or ""
        cookie = Cookie(
            key=COOKIE,
            value=value,
            path=f"/c/{token}",
            httponly=True,
            samesite="lax",
            secure=runtime.settings.base_url.startswith("https://"),
            max_age=365 * 24 * 3600,
        )
        return Redirect(f"/c/{token}", status_code=303, cookies=[cookie])

    @staticmethod
    def _token(found: service.Pool, offset: int, runtime: Runtime) -> str:
        key = runtime.keys.keyring.get(found.key_id)
        assert key is not None
        return Signer(key).claim_token(found.campaign_id, found.first_serial + offset)

    async def _render(
        self, token: str, cookie: str | None, runtime: Runtime, error: Problem | None = None
    ) -> Response[str]:
        ref = service.code_of(runtime.keys.verifier, token)
        terms = await service.offer(runtime.pool, ref.campaign_id)
        found = await state.read(runtime.redis, runtime.settings.partitions, ref)
        mine = service.owns(runtime.keys.keyring, token, found.owner, cookie)
        code_state = service.consumer_state(found, terms)
        if mine:
            content = pages.claimed_code(*self._qr(ref, runtime), state_url=f"/c/{token}/state")
        elif found.owner is not None:
            code_state = "taken"
            content = _TAKEN + pages.claim_form(
                f"/c/{token}/claim", error.detail if error else None
            )
        elif code_state == "valid":
            code_state = "unclaimed"
            content = pages.claim_form(f"/c/{token}/claim", error.detail if error else None)
        else:
            content = f'<p class="error">{escape(error.detail)}</p>' if error else ""
        body = pages.page(
            terms.name,
            "claim.html",
            campaign=terms.name,
            value=pages.money(terms.face_value, terms.currency),
            validity=pages.validity(
                terms.valid_from, terms.valid_until, terms.hours, terms.timezone
            ),
            state=code_state,
            state_text=pages.STATE_TEXT[code_state],
            content=content,
        )
        return _html(body, status=error.status if error else 200)

    @staticmethod
    def _qr(ref: CodeRef, runtime: Runtime) -> tuple[str, str]:
        key = runtime.keys.keyring.get(ref.key_id)
        assert key is not None
        code = Signer(key).sign(ref.campaign_id, ref.serial)
        return svg_markup(code), to_typed(code)

    async def _pool_page(
        self,
        found: service.Pool,
        runtime: Runtime,
        error: str | None = None,
        status: int = 200,
        extra: str = "",
    ) -> Response[str]:
        terms = await service.offer(runtime.pool, found.campaign_id)
        left = max(0, found.size - await state.handed_out(runtime.redis, found.id))
        content = (
            pages.claim_form(f"/p/{found.id}/claim", error) + extra
            if left
            else '<p><span class="state empty">All gone</span></p>'
        )
        body = pages.page(
            terms.name,
            "pool.html",
            campaign=terms.name,
            value=pages.money(terms.face_value, terms.currency),
            validity=pages.validity(
                terms.valid_from, terms.valid_until, terms.hours, terms.timezone
            ),
            remaining=f"{left:,} of {found.size:,} left",
            content=content,
        )
        return _html(body, status=status)


class PoolsController(Controller):
    path = "/v1"
    tags = ["claim"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @post("/campaigns/{campaign_id:int}/pools", status_code=201, summary="Publish a pool link")
    async def create_pool(
        self, campaign_id: int, data: PoolIn, merchant_id: int, runtime: Runtime
    ) -> PoolOut:
        """Each visitor of the link takes the next unclaimed code of the order."""
        found = await service.create_pool(
            runtime.pool, merchant_id, campaign_id, data.order_id, data.per_consumer
        )
        return await _pool_out(found, runtime)

    @get("/pools/{pool_id:str}", summary="A pool and how many codes it handed out")
    async def get_pool(self, pool_id: str, merchant_id: int, runtime: Runtime) -> PoolOut:
        return await _pool_out(await service.find_pool(runtime.pool, pool_id, merchant_id), runtime)


async def _pool_out(found: service.Pool, runtime: Runtime) -> PoolOut:
    return PoolOut(
        id=found.id,
        url=f"{runtime.settings.base_url}/p/{found.id}",
        campaign_id=found.campaign_id,
        size=found.size,
        per_consumer=found.per_consumer,
        handed_out=min(found.size, await state.handed_out(runtime.redis, found.id)),
    )
