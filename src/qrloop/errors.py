"""The closed set of machine reasons and their RFC 9457 problem+json answers."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://qrloop.dev/problems/"


class Reason(StrEnum):
    """Every refusal carries exactly one of these; clients branch on them."""

    # At the till.
    INVALID = "invalid"
    REVOKED_KEY = "revoked_key"
    VOIDED = "voided"
    ALREADY_REDEEMED = "already_redeemed"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    OUTSIDE_HOURS = "outside_hours"
    NOT_ACCEPTED_HERE = "not_accepted_here"
    CAMPAIGN_PAUSED = "campaign_paused"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    # Everywhere else.
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    QUOTA_EXCEEDED = "quota_exceeded"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INTERNAL = "internal"


# reason → (HTTP status, title). The title is stable; `detail` says what happened.
_ANSWERS: dict[Reason, tuple[int, str]] = {
    Reason.INVALID: (422, "Invalid code"),
    Reason.REVOKED_KEY: (422, "Code signed with a revoked key"),
    Reason.VOIDED: (409, "Code voided"),
    Reason.ALREADY_REDEEMED: (409, "Code already redeemed"),
    Reason.NOT_YET_VALID: (403, "Code not yet valid"),
    Reason.EXPIRED: (403, "Code expired"),
    Reason.OUTSIDE_HOURS: (403, "Outside the campaign's hours"),
    Reason.NOT_ACCEPTED_HERE: (403, "Code not accepted at this store"),
    Reason.CAMPAIGN_PAUSED: (403, "Campaign paused"),
    Reason.RATE_LIMITED: (429, "Too many attempts"),
    Reason.UNAVAILABLE: (503, "Service unavailable"),
    Reason.BAD_REQUEST: (400, "Bad request"),
    Reason.UNAUTHORIZED: (401, "Unauthorized"),
    Reason.FORBIDDEN: (403, "Forbidden"),
    Reason.NOT_FOUND: (404, "Not found"),
    Reason.CONFLICT: (409, "Conflict"),
    Reason.QUOTA_EXCEEDED: (429, "Quota exceeded"),
    Reason.METHOD_NOT_ALLOWED: (405, "Method not allowed"),
    Reason.PAYLOAD_TOO_LARGE: (413, "Payload too large"),
    Reason.INTERNAL: (500, "Internal error"),
}


def status_of(reason: Reason) -> int:
    return _ANSWERS[reason][0]


class Problem(Exception):
    """A refusal to be answered as problem+json; raise it anywhere below a route."""

    def __init__(
        self,
        reason: Reason,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @property
    def status(self) -> int:
        return status_of(self.reason)

    def body(self) -> dict[str, Any]:
        """The RFC 9457 document, with `reason` and any extension members."""
        status, title = _ANSWERS[self.reason]
        return {
            "type": PROBLEM_TYPE_BASE + self.reason.value,
            "title": title,
            "status": status,
            "detail": self.detail,
            "reason": self.reason.value,
            **self.extra,
        }
