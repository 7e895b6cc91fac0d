"""Request and response bodies of the accounts routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from qrloop.pagination import Page, schema_name
from qrloop.text import text

Name = Annotated[str, text(max_length=200)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class StoreIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class StoreOut(msgspec.Struct):
    """`disabled`: its terminals are refused at the till."""

    id: int
    name: str
    disabled: bool
    created_at: datetime


class TerminalIn(msgspec.Struct, forbid_unknown_fields=True):
    store_id: Id
    name: Name


class TerminalOut(msgspec.Struct):
    """A terminal as read or listed: never its secret. `disabled` is the terminal's own switch
    (a disabled store's terminals are refused too)."""

    id: int
    store_id: int
    name: str
    disabled: bool
    created_at: datetime


class TerminalSecret(TerminalOut):
    """A terminal just created or rotated: `secret` is shown this once."""

    secret: str


class Switched(msgspec.Struct):
    """The state a disable or enable call left a store or terminal in."""

    id: int
    disabled: bool


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    terminal_id: Id
    secret: Annotated[str, text(max_length=200)]


class TokenOut(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (the OAuth token type, not a secret)


class ApiKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    label: Annotated[str, text(max_length=100)]


class ApiKeyOut(msgspec.Struct):
    """A key as listed: never the key itself nor its digest."""

    id: int
    prefix: str | None  # None for keys made before prefixes were kept
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewApiKey(msgspec.Struct):
    """A key just created: `api_key` is shown this once."""

    id: int
    prefix: str
    label: str
    created_at: datetime
    api_key: str


StorePage = Annotated[Page[StoreOut], schema_name("StorePage")]
TerminalPage = Annotated[Page[TerminalOut], schema_name("TerminalPage")]
ApiKeyPage = Annotated[Page[ApiKeyOut], schema_name("ApiKeyPage")]
