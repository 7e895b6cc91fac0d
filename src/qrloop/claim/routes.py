"""Consumer pages (`/c/...`, `/p/...`) and the merchant's pool routes.

A claim link is not a credential for the code behind it: the code is shown only to the browser
holding the ownership cookie, which a browser earns by proving, with a one-time code sent to a
phone number or email, that it is that identifier's person. Typing an identifier proves nothing.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect

from qrloop.accounts.guards import current_merchant
from qrloop.claim import client_address, otp, pages, sendcaps, service, state, texts
from qrloop.claim.consumers import Consumer, Identity, consumer_of, identify
from qrloop.claim.texts import Refusal, explain
from qrloop.codes.format import CodeRef, Signer, to_typed
from qrloop.codes.render import svg_markup
from qrloop.errors import Problem, Reason
from qrloop.messages import outbox
from qrloop.messages.catalogue import Language
from qrloop.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, schema_name
from qrloop.runtime import Runtime
from qrloop.text import text

COOKIE = "qrloop_claim"
LINKS_GIVE_UP_SECONDS = 24 * 3600
LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600

AnyRequest = Request[Any, Any, Any]


class IdentifierForm(msgspec.Struct):
    identifier: Annotated[str, text(max_length=320)]


class CodeForm(msgspec.Struct):
    code: Annotated[str, text(max_length=16)]


Identified = Annotated[IdentifierForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
Typed = Annotated[CodeForm, Body(media_type=RequestEncodingType.URL_ENCODED)]


class PoolIn(msgspec.Struct, forbid_unknown_fields=True):
    order_id: Annotated[int, msgspec.Meta(ge=1)]
    per_consumer: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    verification: Literal["none", "otp"] = "otp"

    EXAMPLE: ClassVar[dict[str, Any]] = {"order_id": 1, "per_consumer": 1, "verification": "otp"}


class PoolOut(msgspec.Struct):
    id: str
    url: str
    campaign_id: int
    size: int
    per_consumer: int
    verification: str
    handed_out: int

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": "Hk3v9QxR2mTz-a7W",
        "url": "http://127.0.0.1:8000/p/Hk3v9QxR2mTz-a7W",
        "campaign_id": 1,
        "size": 1000,
        "per_consumer": 1,
        "verification": "otp",
        "handed_out": 37,
    }


PoolPage = Annotated[Page[PoolOut], schema_name("PoolPage")]


def _language(request: AnyRequest) -> Language:
    """The page's language: the switch's `?lang=`, its cookie, or `Accept-Language`."""
    return texts.page_language(
        request.query_params.get("lang"),
        request.cookies.get(texts.COOKIE),
        request.headers.get("accept-language"),
    )


def _html(body: str, request: AnyRequest, runtime: Runtime, status: int = 200) -> Response[str]:
    """A page; a page reached by the language switch remembers its choice for every page."""
    switched = texts.chosen(request.query_params.get("lang"))
    cookies = []
    if switched is not None:
        cookies.append(_cookie(runtime, texts.COOKIE, switched, "/", LANGUAGE_COOKIE_SECONDS))
    return Response(
        body,
        media_type=MediaType.HTML,
        status_code=status,
        cookies=cookies,
        headers=pages.security_headers(),
    )


def _cookie(
    runtime: Runtime,
    key: str,
    value: str,
    path: str,
    max_age: int,
    samesite: Literal["lax", "strict"] = "lax",
) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path=path,
        httponly=True,
        samesite=samesite,
        secure=runtime.settings.base_url.startswith("https://"),
        max_age=max_age,
    )


def _challenge_cookie(runtime: Runtime, challenge: otp.Challenge | None, path: str) -> Cookie:
    """The browser's tie to its one-time code; without a challenge, the cookie's removal.
    Strict: the code is only ever typed into our own page, never reached from elsewhere."""
    if challenge is None:
        return _cookie(runtime, otp.COOKIE, "", path, 0, "strict")
    return _cookie(runtime, otp.COOKIE, challenge.id, path, otp.VALID_SECONDS, "strict")


def _to_code_form(page: str, challenge: otp.Challenge, runtime: Runtime) -> Redirect:
    """Back to the page, which now asks this browser for the one-time code just sent."""
    cookie = _challenge_cookie(runtime, challenge, page)
    return Redirect(page, status_code=303, cookies=[cookie])


def _to_code(token: str, owner: str, runtime: Runtime, clear_challenge: str) -> Redirect:
    """To the code's page, with this browser now its owner's; the spent challenge forgotten."""
    value = service.ownership_cookie(runtime.keys.keyring, token, owner) or ""
    ownership = _cookie(runtime, COOKIE, value, f"/c/{token}", 365 * 24 * 3600)
    forget = _challenge_cookie(runtime, None, clear_challenge)
    return Redirect(f"/c/{token}", status_code=303, cookies=[ownership, forget])


async def _take_sends(
    consumer: Consumer, place: sendcaps.Cap, request: AnyRequest, runtime: Runtime
) -> None:
    """Count a message to `consumer` asked for on the link or pool `place`, against the person,
    the place and the client's address; 429 over any cap, before anything is queued."""
    settings = runtime.settings
    address = client_address.client_address(
        request.client.host if request.client else None,
        request.headers.getall("x-forwarded-for", []),
        client_address.trusted_networks(settings.trusted_proxies),
    )
    caps = [
        await otp.person_cap(runtime.redis, consumer),
        place,
        sendcaps.per_address(address, settings),
    ]
    await sendcaps.take(runtime.redis, caps)


async def _send_code(
    identity: Identity, scope: str, place: sendcaps.Cap, request: AnyRequest, runtime: Runtime
) -> otp.Challenge:
    """A one-time code for `identity` on the link `scope`, counted in the caps, then queued in
    the page's language."""
    consumer = consumer_of(runtime.keys.keyring, identity)
    await _take_sends(consumer, place, request, runtime)
    challenge = await otp.start(
        runtime.redis, runtime.keys.keyring, consumer, scope, otp.masked(identity.recipient)
    )
    await outbox.enqueue(
        runtime.pool,
        identity.channel,
        identity.recipient,
        _language(request),
        "otp",
        otp.VALID_SECONDS,
        code=challenge.code,
    )
    return challenge


async def _prove(scope: str, code: str, request: AnyRequest, runtime: Runtime) -> Consumer:
    """The person whose one-time code for `scope` this browser typed."""
    challenge_id = request.cookies.get(otp.COOKIE)
    return await otp.prove(runtime.redis, runtime.keys.keyring, challenge_id, scope, code)


def _on_page(refusal: Problem) -> Problem:
    """A refusal the page explains; a store that cannot answer is a 503 problem instead."""
    if refusal.status >= 500:
        raise refusal
    return refusal


class ClaimPages(Controller):
    """No login: a link names an offer; a one-time code proves who may see its code."""

    include_in_schema = False

    @get("/c/{token:str}")
    async def claim_page(self, token: str, request: AnyRequest, runtime: Runtime) -> Response[str]:
        return await self._render(token, request, runtime)

    @post("/c/{token:str}/claim")
    async def claim(
        self, token: str, data: Identified, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        """Send a one-time code to the identifier; the page then asks for it."""
        ref = service.code_of(runtime.keys.verifier, token)
        found = await state.read(runtime.redis, runtime.settings.partitions, ref)
        if service.owns(runtime.keys.keyring, token, found.owner, request.cookies.get(COOKIE)):
            return Redirect(f"/c/{token}", status_code=303)
        try:
            service.refuse_unclaimable(found)
            identity = identify(data.identifier, runtime.settings.phone_region)
            place = sendcaps.per_link(ref.campaign_id, ref.serial, runtime.settings)
            challenge = await _send_code(identity, f"c:{token}", place, request, runtime)
        except Problem as refusal:
            return await self._render(token, request, runtime, error=_on_page(refusal))
        return _to_code_form(f"/c/{token}", challenge, runtime)

    @post("/c/{token:str}/verify")
    async def verify(
        self, token: str, data: Typed, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        """The right one-time code claims the code for its person, or shows it to them again."""
        ref = service.code_of(runtime.keys.verifier, token)
        try:
            consumer = await _prove(f"c:{token}", data.code, request, runtime)
            owner = await service.claim(runtime.redis, runtime.settings.partitions, ref, consumer)
        except Problem as refusal:
            return await self._render(token, request, runtime, error=_on_page(refusal))
        return _to_code(token, owner, runtime, clear_challenge=f"/c/{token}")

    @get("/c/{token:str}/state", media_type=MediaType.JSON)
    async def claim_state(self, token: str, runtime: Runtime) -> dict[str, str]:
        """The live state of the code behind a claim link (nothing redeemable is revealed)."""
        ref = service.code_of(runtime.keys.verifier, token)
        found = await state.read(runtime.redis, runtime.settings.partitions, ref)
        terms = await service.offer(runtime.pool, ref.campaign_id)
        return {"state": service.consumer_state(found, terms)}

    @get("/p/{pool_id:str}")
    async def pool_page(self, pool_id: str, request: AnyRequest, runtime: Runtime) -> Response[str]:
        found = await service.find_pool(runtime.pool, pool_id)
        return await self._pool_page(found, request, runtime)

    @post("/p/{pool_id:str}/claim")
    async def pool_claim(
        self, pool_id: str, data: Identified, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        """An 'otp' pool sends a one-time code first; a 'none' pool hands out the next code."""
        found = await service.find_pool(runtime.pool, pool_id)
        try:
            identity = identify(data.identifier, runtime.settings.phone_region)
            if found.verification == "none":
                consumer = consumer_of(runtime.keys.keyring, identity)
                return await self._hand_out(found, consumer, request, runtime)
            if await state.handed_out(runtime.redis, found.id) >= found.size:
                raise _all_gone()
            place = sendcaps.per_pool(found.id, found.size, runtime.settings)
            challenge = await _send_code(identity, f"p:{found.id}", place, request, runtime)
        except Problem as refusal:
            return await self._pool_page(found, request, runtime, error=_on_page(refusal))
        return _to_code_form(f"/p/{found.id}", challenge, runtime)

    @post("/p/{pool_id:str}/verify")
    async def pool_verify(
        self, pool_id: str, data: Typed, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        """The right one-time code hands its person the pool's next code."""
        found = await service.find_pool(runtime.pool, pool_id)
        try:
            consumer = await _prove(f"p:{found.id}", data.code, request, runtime)
        except Problem as refusal:
            return await self._pool_page(found, request, runtime, error=_on_page(refusal))
        return await self._hand_out(found, consumer, request, runtime)

    @post("/p/{pool_id:str}/links")
    async def pool_links(
        self, pool_id: str, data: Identified, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        """Send the person the links to the codes they hold. The answer is the same whether
        they hold any or not: only the identifier's owner learns what it holds."""
        found = await service.find_pool(runtime.pool, pool_id)
        try:
            identity = identify(data.identifier, runtime.settings.phone_region)
            consumer = consumer_of(runtime.keys.keyring, identity)
            # Counted whether or not the person holds codes, so a 429 tells no one they do.
            place = sendcaps.per_pool(found.id, found.size, runtime.settings)
            await _take_sends(consumer, place, request, runtime)
            held = await state.held_in_pool(runtime.redis, found.id, consumer)
            if held:
                await self._send_links(found, identity, held, request, runtime)
        except Problem as refusal:
            return await self._pool_page(found, request, runtime, error=_on_page(refusal))
        hint = otp.masked(identity.recipient)
        note = texts.text(_language(request), "pool.links_sent", hint=hint)
        return await self._pool_page(found, request, runtime, content=pages.paragraph(note))

    async def _send_links(
        self,
        found: service.Pool,
        identity: Identity,
        offsets: list[int],
        request: AnyRequest,
        runtime: Runtime,
    ) -> None:
        terms = await service.offer(runtime.pool, found.campaign_id)
        base = runtime.settings.base_url
        links = "\n".join(f"{base}/c/{self._token(found, offset, runtime)}" for offset in offsets)
        await outbox.enqueue(
            runtime.pool,
            identity.channel,
            identity.recipient,
            _language(request),
            "links",
            LINKS_GIVE_UP_SECONDS,
            offer=terms.name,
            links=links,
        )

    async def _hand_out(
        self, found: service.Pool, consumer: Consumer, request: AnyRequest, runtime: Runtime
    ) -> Response[str]:
        outcome, offsets = await service.hand_out(
            runtime.redis, runtime.settings.partitions, found, consumer
        )
        if outcome == "empty":
            return await self._pool_page(found, request, runtime, error=_all_gone())
        if outcome == "limit":
            language = _language(request)
            count = pages.number(len(offsets), language)
            note = pages.paragraph(texts.text(language, "pool.limit", count=count))
            form = pages.identifier_form(
                language, f"/p/{found.id}/links", "identifier.send_links", "identifier.otp_note"
            )
            return await self._pool_page(found, request, runtime, content=note + form, status=409)
        token = self._token(found, offsets[0], runtime)
        return _to_code(token, consumer.newest, runtime, clear_challenge=f"/p/{found.id}")

    @staticmethod
    def _token(found: service.Pool, offset: int, runtime: Runtime) -> str:
        key = runtime.keys.keyring.get(found.key_id)
        assert key is not None
        return Signer(key).claim_token(found.campaign_id, found.serial(offset))

    async def _render(
        self, token: str, request: AnyRequest, runtime: Runtime, error: Problem | None = None
    ) -> Response[str]:
        language = _language(request)
        ref = service.code_of(runtime.keys.verifier, token)
        terms = await service.offer(runtime.pool, ref.campaign_id)
        found = await state.read(runtime.redis, runtime.settings.partitions, ref)
        mine = service.owns(runtime.keys.keyring, token, found.owner, request.cookies.get(COOKIE))
        code_state = service.consumer_state(found, terms)
        detail = explain(error, language) if error else None
        if mine:
            content = pages.claimed_code(language, *self._qr(ref, runtime))
        elif code_state != "valid":
            content = pages.paragraph(detail, "error") if detail else ""
        else:
            code_state = "taken" if found.owner is not None else "unclaimed"
            hint = await otp.pending(runtime.redis, request.cookies.get(otp.COOKIE), f"c:{token}")
            if hint is not None:
                content = pages.code_form(language, f"/c/{token}/verify", hint, detail)
            else:
                content = pages.identifier_form(
                    language,
                    f"/c/{token}/claim",
                    "identifier.send_code",
                    "identifier.otp_note",
                    detail,
                )
                if found.owner is not None:
                    content = pages.paragraph(texts.text(language, "taken.note")) + content
        body = pages.page(
            language,
            f"/c/{token}",
            terms.name,
            "claim.html",
            campaign=terms.name,
            value=pages.money(terms.face_value, terms.currency, language),
            validity=_validity(terms, language),
            state=code_state,
            state_text=texts.text(language, f"state.{code_state}"),
            state_names=pages.state_names(language),
            content=content,
        )
        return _html(body, request, runtime, status=error.status if error else 200)

    @staticmethod
    def _qr(ref: CodeRef, runtime: Runtime) -> tuple[str, str]:
        key = runtime.keys.keyring.get(ref.key_id)
        assert key is not None
        code = Signer(key).sign(ref.campaign_id, ref.serial)
        return svg_markup(code), to_typed(code)

    async def _pool_page(
        self,
        found: service.Pool,
        request: AnyRequest,
        runtime: Runtime,
        error: Problem | None = None,
        content: str | None = None,
        status: int | None = None,
    ) -> Response[str]:
        language = _language(request)
        terms = await service.offer(runtime.pool, found.campaign_id)
        left = max(0, found.size - await state.handed_out(runtime.redis, found.id))
        detail = explain(error, language) if error else None
        if content is None:
            content = await self._pool_form(found, request, runtime, left, detail, language)
        remaining = texts.text(
            language,
            "pool.remaining",
            left=pages.number(left, language),
            size=pages.number(found.size, language),
        )
        body = pages.page(
            language,
            f"/p/{found.id}",
            terms.name,
            "pool.html",
            campaign=terms.name,
            value=pages.money(terms.face_value, terms.currency, language),
            validity=_validity(terms, language),
            remaining=remaining,
            content=content,
        )
        return _html(body, request, runtime, status=status or (error.status if error else 200))

    @staticmethod
    async def _pool_form(
        found: service.Pool,
        request: AnyRequest,
        runtime: Runtime,
        left: int,
        detail: str | None,
        language: Language,
    ) -> str:
        if not left:
            gone = pages.paragraph(detail, "error") if detail else ""
            empty = texts.text(language, "state.empty")
            return gone + f'<p><span class="state empty">{escape(empty)}</span></p>'
        action = f"/p/{found.id}/claim"
        if found.verification == "none":
            return pages.identifier_form(
                language, action, "identifier.claim", "identifier.plain_note", detail
            )
        hint = await otp.pending(runtime.redis, request.cookies.get(otp.COOKIE), f"p:{found.id}")
        if hint is not None:
            return pages.code_form(language, f"/p/{found.id}/verify", hint, detail)
        return pages.identifier_form(
            language, action, "identifier.send_code", "identifier.otp_note", detail
        )


def _validity(terms: service.Offer, language: Language) -> str:
    return pages.validity(
        terms.valid_from, terms.valid_until, terms.hours, terms.timezone, language
    )


def _all_gone() -> Refusal:
    return Refusal(Reason.CONFLICT, "error.all_gone")


class PoolsController(Controller):
    path = "/v1"
    tags = ["claim"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @post("/campaigns/{campaign_id:int}/pools", status_code=201, summary="Publish a pool link")
    async def create_pool(
        self, campaign_id: int, data: PoolIn, merchant_id: int, runtime: Runtime
    ) -> PoolOut:
        """Each visitor of the link takes the next unclaimed code of the order, at most
        `per_consumer` each; with `verification: "otp"` (the default) only after proving, by a
        one-time code, the phone number or email they type."""
        found = await service.create_pool(
            runtime.pool,
            merchant_id,
            campaign_id,
            data.order_id,
            data.per_consumer,
            data.verification,
        )
        return _pool_out(found, 0, runtime)

    @get("/pools", summary="The account's pool links, newest first")
    async def list_pools(
        self,
        merchant_id: int,
        runtime: Runtime,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> PoolPage:
        """Each with how many codes it handed out; pass `next_cursor` back as `cursor` for the
        next page."""
        page = await service.pools(runtime.pool, merchant_id, cursor, limit)
        counts = await state.handed_out_each(runtime.redis, [found.id for found in page.items])
        items = [
            _pool_out(found, count, runtime)
            for found, count in zip(page.items, counts, strict=True)
        ]
        return Page(items=items, next_cursor=page.next_cursor)

    @get("/pools/{pool_id:str}", summary="A pool and how many codes it handed out")
    async def get_pool(self, pool_id: str, merchant_id: int, runtime: Runtime) -> PoolOut:
        found = await service.find_pool(runtime.pool, pool_id, merchant_id)
        return _pool_out(found, await state.handed_out(runtime.redis, found.id), runtime)


def _pool_out(found: service.Pool, handed_out: int, runtime: Runtime) -> PoolOut:
    return PoolOut(
        id=found.id,
        url=f"{runtime.settings.base_url}/p/{found.id}",
        campaign_id=found.campaign_id,
        size=found.size,
        per_consumer=found.per_consumer,
        verification=found.verification,
        handed_out=min(found.size, handed_out),
    )
