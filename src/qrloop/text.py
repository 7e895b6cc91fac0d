"""Text a request may carry. PostgreSQL text cannot hold NUL, so no field accepts it: a NUL
is refused with 400 when the request is read, not with a 500 at the first query."""

from __future__ import annotations

import msgspec

NO_NUL = r"^[^\x00]*$"


def text(max_length: int, min_length: int = 1) -> msgspec.Meta:
    """Constraints for a text field: its length, and no NUL character."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=NO_NUL)
