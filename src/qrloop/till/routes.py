"""The phone till: merchant routes that pair phones with terminals, the pages a phone opens,
and the frame endpoint for phones whose browser cannot decode QR codes itself.

The paired phone's credential is an HttpOnly cookie, not localStorage: a script can never read
it, so even a script injected into the page could take only short-lived access tokens, which a
revocation ends within a second. SameSite=Strict and the path `/till` keep it off every other
request, and the exchange also asks for a header no cross-site form can send.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import asyncpg
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from qrloop import metrics
from qrloop.accounts.guards import current_merchant, current_terminal
from qrloop.accounts.schemas import TokenOut
from qrloop.accounts.tokens import TerminalClaims, mint
from qrloop.errors import Problem, Reason
from qrloop.keys import Keys
from qrloop.openapi import raw_body
from qrloop.pagination import DEFAULT_LIMIT, Cursor, Limit
from qrloop.redemption.decide import Redeemer
from qrloop.redemption.dependencies import provide_redeemer
from qrloop.redemption.schemas import NONCE_MAX_LENGTH, NONCE_PATTERN, RedeemOut, redeemed_body
from qrloop.settings import Settings
from qrloop.till import frames, pages, service
from qrloop.till.schemas import DeviceOut, DevicePage, NoCodeFound, PairingOut

AnyRequest = Request[Any, Any, Any]
COOKIE = "qrloop_till"
COOKIE_PATH = "/till"
COOKIE_SECONDS = 365 * 24 * 3600
# The exchange answers only requests carrying this header: a cross-site form cannot send it,
# and a cross-site script cannot without a CORS preflight, which this server never grants.
EXCHANGE_HEADER = "x-qrloop-till"
FRAME_PATH = "/v1/redeem/frame"
_FRAME_MEDIA = ("image/jpeg", "image/png")
_FRAME_EXAMPLE = "(the bytes of a JPEG or PNG camera frame)"


class TillTokenOut(TokenOut):
    """An access token for a paired phone, and what the page shows it as."""

    terminal_id: int = 0
    terminal_name: str = ""
    store_name: str = ""

    EXAMPLE: ClassVar[dict[str, Any]] = {
        **TokenOut.EXAMPLE,
        "terminal_id": 1,
        "terminal_name": "Counter 1",
        "store_name": "Main",
    }


class TillPairingController(Controller):
    """A merchant pairs phones with its terminals and revokes them (the dashboard calls the
    same service functions)."""

    path = "/v1/terminals/{terminal_id:int}"
    tags = ["accounts"]
    dependencies = {"merchant_id": Provide(current_merchant)}

    @post("/pairings", status_code=201, summary="A one-time link that pairs a phone as this till")
    async def start_pairing(
        self, terminal_id: int, merchant_id: int, pool: asyncpg.Pool, settings: Settings
    ) -> PairingOut:
        """Open `url` on the phone (or show `qr_svg` for its camera) within ten minutes; the
        first phone to confirm becomes a device of this terminal, and the link is spent."""
        return await service.start_pairing(pool, settings.base_url, merchant_id, terminal_id)

    @get("/devices", summary="Phones paired with this terminal, newest first")
    async def list_devices(
        self,
        terminal_id: int,
        merchant_id: int,
        pool: asyncpg.Pool,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> DevicePage:
        """Revoked phones included; never a phone's credential."""
        return await service.devices(pool, merchant_id, terminal_id, cursor, limit)

    @post(
        "/devices/{device_id:int}/revoke",
        status_code=200,
        summary="Revoke a paired phone",
    )
    async def revoke_device(
        self, terminal_id: int, device_id: int, merchant_id: int, pool: asyncpg.Pool
    ) -> DeviceOut:
        """Its credential is refused at once, its access tokens within a second on every API
        process. Revoking twice answers the same."""
        return await service.revoke_device(pool, merchant_id, terminal_id, device_id)


def _html(body: str, headers: dict[str, str], status: int = 200) -> Response[str]:
    return Response(body, media_type=MediaType.HTML, status_code=status, headers=headers)


def _same_origin(request: AnyRequest, base_url: str) -> None:
    """Refuse a form posted from another site: it could pair this phone with a stranger's
    terminal. Browsers say where a request comes from in Sec-Fetch-Site, older ones in Origin
    (which the pairing page's referrer policy lets them send): this server as it was reached,
    or as QRLOOP_PUBLIC_URL names it (behind a proxy that ends TLS)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    own = (None, f"{request.url.scheme}://{request.url.netloc}", base_url)
    allowed = site in ("same-origin", "none") if site is not None else origin in own
    if not allowed:
        raise Problem(Reason.FORBIDDEN, "Pair from the pairing page itself.")


class TillPages(Controller):
    """What the phone opens: the pairing link, then the till page."""

    include_in_schema = False

    @get(["/till", "/till/"])
    async def till(self) -> Response[str]:
        return _html(pages.till_page(), pages.till_headers())

    @get("/till/pair/{token:str}")
    async def pair_offer(self, token: str, pool: asyncpg.Pool) -> Response[str]:
        """Says which till the link pairs; spends nothing (link previews open links too)."""
        target = await service.pairing_target(pool, token)
        if target is None:
            return _html(pages.pair_spent(), pages.pairing_headers(), status=410)
        return _html(
            pages.pair_offer(target.terminal_name, target.store_name), pages.pairing_headers()
        )

    @post("/till/pair/{token:str}", status_code=303)
    async def pair(
        self, token: str, request: AnyRequest, pool: asyncpg.Pool, settings: Settings
    ) -> Response[str]:
        """Spend the link: this phone gets a credential of its own, in a cookie, and the till."""
        _same_origin(request, settings.base_url)
        label = request.headers.get("user-agent", "") or "unknown browser"
        credential = await service.consume_pairing(pool, token, label)
        if credential is None:
            return _html(pages.pair_spent(), pages.pairing_headers(), status=410)
        cookie = Cookie(
            key=COOKIE,
            value=credential,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=settings.base_url.startswith("https://"),
            max_age=COOKIE_SECONDS,
        )
        return Redirect("/till/", status_code=303, cookies=[cookie])

    @post("/till/token", status_code=200, media_type=MediaType.JSON)
    async def exchange(
        self, request: AnyRequest, pool: asyncpg.Pool, settings: Settings, keys: Keys
    ) -> TillTokenOut:
        """The paired phone's credential (its cookie) for a short-lived access token."""
        credential = request.cookies.get(COOKIE)
        if request.headers.get(EXCHANGE_HEADER) != "1":
            raise Problem(Reason.FORBIDDEN, f"Send the {EXCHANGE_HEADER} header.")
        if not credential:
            raise Problem(Reason.UNAUTHORIZED, "This phone is not paired; pair it first.")
        paired = await service.device_claims(pool, credential, settings.token_ttl_seconds)
        return TillTokenOut(
            access_token=mint(keys.keyring, paired.claims),
            expires_in=settings.token_ttl_seconds,
            terminal_id=paired.claims.terminal_id,
            terminal_name=paired.terminal_name,
            store_name=paired.store_name,
        )


FrameNonce = Annotated[
    str,
    Parameter(
        description="The scan's nonce, as in `POST /v1/redeem`: a retry of the frame sends it"
        " again",
        min_length=1,
        max_length=NONCE_MAX_LENGTH,
        pattern=NONCE_PATTERN,
    ),
]


@post(
    FRAME_PATH,
    status_code=200,
    tags=["terminal"],
    summary="Find a QR code in a camera frame and redeem it",
    request_max_body_size=frames.MAX_FRAME_BYTES,
    operation_class=raw_body(_FRAME_MEDIA, _FRAME_EXAMPLE),
    dependencies={
        "terminal": Provide(current_terminal, sync_to_thread=False),
        "redeemer": Provide(provide_redeemer, sync_to_thread=False),
    },
)
async def redeem_frame(
    request: AnyRequest, nonce: FrameNonce, terminal: TerminalClaims, redeemer: Redeemer
) -> RedeemOut | NoCodeFound:
    """The body is one JPEG or PNG frame (at most 2 MiB and 4096x4096 pixels). The first QR
    code found in it is redeemed exactly as `POST /v1/redeem` would, with the same answers and
    refusals; the same nonce retried gets the first answer. A frame holding no QR code answers
    `{"status": "no_code"}` and redeems nothing; bytes that are no readable image, 400."""
    code = await frames.code_in_frame(await request.body())
    if code is None:
        metrics.count_answer(FRAME_PATH, "no_code")
        return NoCodeFound(status="no_code")
    body = redeemed_body(await redeemer.redeem(code, nonce, terminal))
    metrics.count_answer(FRAME_PATH, body.status)
    return body
