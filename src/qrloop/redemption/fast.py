"""POST /v1/redeem served straight from ASGI, in front of the framework.

The Litestar route in routes.py documents the same call and answers it the same way (it is
what runs with QRLOOP_FAST_PATH=false); this path skips the framework's per-request machinery
(request object, dependency injection, response pipeline), which costs more than the whole
redemption. Authentication, validation and problem+json answers are the same code as there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from qrloop import metrics
from qrloop.accounts.guards import missing_credential
from qrloop.accounts.tokens import InvalidToken, invalid_token
from qrloop.bearer import credential_of
from qrloop.errors import PROBLEM_MEDIA_TYPE, Problem
from qrloop.redemption import decide
from qrloop.redemption.dependencies import Till
from qrloop.redemption.schemas import RedeemIn, redeemed_body

# Plain ASGI shapes: this module needs no framework types.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/v1/redeem"
MAX_BODY = 4096
log = logging.getLogger("qrloop.fast")

_decode = msgspec.json.Decoder(RedeemIn).decode
_encode = msgspec.json.Encoder().encode
_JSON = [(b"content-type", b"application/json")]


def with_fast_redeem(app: ASGIApp, till: Callable[[], Till]) -> ASGIApp:
    """`app`, except that POST /v1/redeem is answered directly."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST":
            await _redeem(till(), scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


async def _redeem(till: Till, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        terminal = till.keys.tokens.verify(_bearer(scope))
        body = await _body(receive)
        try:
            request = _decode(body)
        except msgspec.DecodeError as error:  # ValidationError is a DecodeError
            raise decide.malformed(error) from None
        redeemed = await till.redeemer.redeem(request.code, request.nonce, terminal)
    except InvalidToken:
        await _problem(send, invalid_token())
    except Problem as problem:
        await _problem(send, problem)
    except Exception as error:  # an answer is owed even for what was not foreseen
        log.exception("unexpected error on %s", PATH, exc_info=error)
        await _problem(send, decide.internal())
    else:
        answer = redeemed_body(redeemed)
        metrics.count_answer(PATH, answer.status)
        await _answer(send, 200, _JSON, _encode(answer))


def _bearer(scope: Scope) -> str:
    """The same rule as accounts.guards.bearer, read from raw ASGI headers."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            credential = credential_of(value.decode("latin-1"))
            if credential is not None:
                return credential
            break
    raise missing_credential()


async def _body(receive: Receive) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise decide.too_large(MAX_BODY)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _problem(send: Send, problem: Problem) -> None:
    metrics.count_answer(PATH, problem.reason.value)
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    await _answer(send, problem.status, headers, _encode(problem.body()))


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
