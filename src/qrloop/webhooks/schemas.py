"""Request and response bodies of the webhook routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from qrloop.pagination import Page, schema_name
from qrloop.text import text
from qrloop.webhooks.outbox import EventType

Url = Annotated[str, text(max_length=2048)]


class EndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    # Every event type when omitted.
    events: Annotated[list[EventType], msgspec.Meta(min_length=1)] | None = None


class EndpointOut(msgspec.Struct):
    id: int
    url: str
    events: list[EventType]
    active: bool
    created_at: datetime


EndpointPage = Annotated[Page[EndpointOut], schema_name("EndpointPage")]


class EndpointSecret(EndpointOut):
    """With the signing secret: shown when an endpoint is created or its secret rotated."""

    secret: str


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
