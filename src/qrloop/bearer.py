"""The one reading of an `Authorization: Bearer <credential>` header, for the API's guards, the
till's fast path and the probes of the other processes (which load no web framework)."""

from __future__ import annotations

_PREFIX = "bearer "


def credential_of(authorization: str) -> str | None:
    """The credential of an Authorization header value; None when it is not a bearer one or
    carries nothing. The scheme's name is case-insensitive (RFC 9110)."""
    if authorization[: len(_PREFIX)].lower() != _PREFIX:
        return None
    return authorization[len(_PREFIX) :].strip() or None
