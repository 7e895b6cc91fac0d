"""Request and response bodies of the webhook routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from qrloop.pagination import Page, schema_name
from qrloop.text import text
from qrloop.webhooks.outbox import EventType

Url = Annotated[str, text(max_length=2048)]


class EndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    # Every event type when omitted.
    events: Annotated[list[EventType], msgspec.Meta(min_length=1)] | None = None

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "url": "https://hooks.example.com/qrloop",
        "events": ["redemption.created", "redemption.reversed"],
    }


class EndpointOut(msgspec.Struct):
    id: int
    url: str
    events: list[EventType]
    active: bool
    created_at: datetime

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 1,
        "url": "https://hooks.example.com/qrloop",
        "events": ["redemption.created", "redemption.reversed"],
        "active": True,
        "created_at": "2026-12-02T03:59:14.614687Z",
    }


EndpointPage = Annotated[Page[EndpointOut], schema_name("EndpointPage")]


class EndpointSecret(EndpointOut):
    """With the signing secret: shown when an endpoint is created or its secret rotated."""

    secret: str

    EXAMPLE: ClassVar[dict[str, Any]] = {
        **EndpointOut.EXAMPLE,
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/oF6vNrSyWg=",
    }


class Attempt(msgspec.Struct):
    attempt: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class Delivery(msgspec.Struct):
    id: int
    event_id: str
    event_type: EventType
    status: str
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None
    log: list[Attempt]

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 7,
        "event_id": "evt_12",
        "event_type": "redemption.created",
        "status": "delivered",
        "attempts": 2,
        "next_attempt_at": None,
        "delivered_at": "2026-12-02T04:00:25.101Z",
        "last_status": 200,
        "last_error": None,
        "log": [
            {
                "attempt": 1,
                "attempted_at": "2026-12-02T04:00:14.950Z",
                "duration_ms": 10003,
                "status_code": None,
                "error": "ReadTimeout: timed out",
            },
            {
                "attempt": 2,
                "attempted_at": "2026-12-02T04:00:25.060Z",
                "duration_ms": 41,
                "status_code": 200,
                "error": None,
            },
        ],
    }
