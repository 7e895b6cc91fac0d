"""Request and response bodies of the accounts routes."""

from __future__ import annotations

from typing import Annotated

import msgspec

from qrloop.text import text

Name = Annotated[str, text(max_length=200)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class StoreIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class StoreOut(msgspec.Struct):
    id: int
    name: str


class TerminalIn(msgspec.Struct, forbid_unknown_fields=True):
    store_id: Id
    name: Name


class TerminalOut(msgspec.Struct):
    id: int
    store_id: int
    name: str
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
