"""The SMS sender: POSTs each message as JSON to an HTTP gateway the operator runs.

The contract (README, "Messages to consumers"): body `{"id", "to", "text"}`, headers
`Authorization: Bearer <token>`, `Idempotency-Key: <id>` (the same on every attempt) and
`Qrloop-Signature` (as on webhooks, keyed with the token). A 2xx answer means sent; a 4xx
other than 408 and 429 means the gateway will never take this message; anything else (5xx,
408, 429, no answer in time, no connection) is retried. The text, which holds the one-time
code, never appears in a failure's reason.
"""

from __future__ import annotations

import re
import time

import httpx
import msgspec

from qrloop.messages.sender import Message, SendFailed
from qrloop.webhooks.signature import SIGNATURE_HEADER, sign

USER_AGENT = "qrloop-messages/1"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_RETRYABLE_CLIENT_ERRORS = {408, 429}  # request timeout, too many requests


class SmsRequest(msgspec.Struct):
    """The body the gateway receives."""

    id: str
    to: str
    text: str


class SmsGatewaySender:
    """Delivers messages of the "sms" channel through the gateway at `url`."""

    def __init__(self, url: str, token: str | None, *, timeout: float) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout

    async def send(self, message: Message) -> None:
        if not _E164.fullmatch(message.recipient):
            raise SendFailed("the recipient is not a phone number in E.164 form", permanent=True)
        body = msgspec.json.encode(SmsRequest(str(message.id), message.recipient, message.body))
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                response = await client.post(
                    self._url, content=body, headers=self._headers(message, body)
                )
        except httpx.HTTPError as error:
            raise SendFailed(f"the SMS gateway did not answer: {type(error).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        permanent = 400 <= status < 500 and status not in _RETRYABLE_CLIENT_ERRORS
        raise SendFailed(f"the SMS gateway answered {status}", permanent=permanent)

    def _headers(self, message: Message, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": str(message.id),
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
            headers[SIGNATURE_HEADER] = sign(self._token, body, int(time.time()))
        return headers
