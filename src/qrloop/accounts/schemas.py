"""Request and response bodies of the accounts routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from qrloop.pagination import Page, schema_name
from qrloop.text import text

Name = Annotated[str, text(max_length=200)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class StoreIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name

    EXAMPLE: ClassVar[dict[str, Any]] = {"name": "Flagship"}


class StoreOut(msgspec.Struct):
    """`disabled`: its terminals are refused at the till."""

    id: int
    name: str
    disabled: bool
    created_at: datetime

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 1,
        "name": "Flagship",
        "disabled": False,
        "created_at": "2026-12-02T03:59:14.614687Z",
    }


class TerminalIn(msgspec.Struct, forbid_unknown_fields=True):
    store_id: Id
    name: Name

    EXAMPLE: ClassVar[dict[str, Any]] = {"store_id": 1, "name": "Till 1"}


class TerminalOut(msgspec.Struct):
    """A terminal as read or listed: never its secret. `disabled` is the terminal's own switch
    (a disabled store's terminals are refused too)."""

    id: int
    store_id: int
    name: str
    disabled: bool
    created_at: datetime

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 1,
        "store_id": 1,
        "name": "Till 1",
        "disabled": False,
        "created_at": "2026-12-02T03:59:14.614687Z",
    }


class TerminalSecret(TerminalOut):
    """A terminal just created or rotated: `secret` is shown this once."""

    secret: str

    EXAMPLE: ClassVar[dict[str, Any]] = {
        **TerminalOut.EXAMPLE,
        "secret": "qrl_term_4cQz0aV3mRkLx8pNw2sEy7uHt1bJf9gD5oKi6nTrMe",
    }


class Switched(msgspec.Struct):
    """The state a disable or enable call left a store or terminal in."""

    id: int
    disabled: bool

    EXAMPLE: ClassVar[dict[str, Any]] = {"id": 1, "disabled": True}


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    terminal_id: Id
    secret: Annotated[str, text(max_length=200)]

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "terminal_id": 1,
        "secret": "qrl_term_4cQz0aV3mRkLx8pNw2sEy7uHt1bJf9gD5oKi6nTrMe",
    }


class TokenOut(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (the OAuth token type, not a secret)

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6IjMifQ.eyJzdWIiOiIxIiwic3RvIjoxLCJtZXIiOjF9"
        ".bm90LWEtcmVhbC1zaWduYXR1cmU",
        "expires_in": 900,
        "token_type": "Bearer",
    }


class ApiKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    label: Annotated[str, text(max_length=100)]

    EXAMPLE: ClassVar[dict[str, Any]] = {"label": "warehouse integration"}


class ApiKeyOut(msgspec.Struct):
    """A key as listed: never the key itself nor its digest."""

    id: int
    prefix: str | None  # None for keys made before prefixes were kept
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 2,
        "prefix": "qrl_live_Xb3kP9w",
        "label": "warehouse integration",
        "created_at": "2026-12-02T03:59:14.614687Z",
        "last_used_at": None,
        "revoked_at": None,
    }


class NewApiKey(msgspec.Struct):
    """A key just created: `api_key` is shown this once."""

    id: int
    prefix: str
    label: str
    created_at: datetime
    api_key: str

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 2,
        "prefix": "qrl_live_Xb3kP9w",
        "label": "warehouse integration",
        "created_at": "2026-12-02T03:59:14.614687Z",
        "api_key": "qrl_live_Xb3kP9wQ2mZr7LsT0vNc4yHa8dUe1fJg6iKo5pRbE",
    }


StorePage = Annotated[Page[StoreOut], schema_name("StorePage")]
TerminalPage = Annotated[Page[TerminalOut], schema_name("TerminalPage")]
ApiKeyPage = Annotated[Page[ApiKeyOut], schema_name("ApiKeyPage")]
