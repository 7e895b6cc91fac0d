"""Request and response bodies of the agreement routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

import msgspec

from qrloop.accounts.schemas import Id

Status = Literal["proposed", "active", "ended"]
Side = Literal["issuer", "acceptor"]


class AgreementIn(msgspec.Struct, forbid_unknown_fields=True):
    campaign_id: Id
    acceptor_merchant_id: Id

    EXAMPLE: ClassVar[dict[str, Any]] = {"campaign_id": 1, "acceptor_merchant_id": 2}


class AgreementOut(msgspec.Struct):
    """One agreement as one of its two sides sees it. `role` is the caller's side; the
    acceptor's name is shown to the issuer only once the acceptor has accepted."""

    id: int
    status: Status
    role: Side
    campaign_id: int
    campaign_name: str
    face_value: int
    currency: str
    issuer_merchant_id: int
    issuer_name: str
    acceptor_merchant_id: int
    acceptor_name: str | None
    proposed_at: datetime
    accepted_at: datetime | None
    ended_at: datetime | None
    ended_by: Side | None

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 1,
        "status": "active",
        "role": "issuer",
        "campaign_id": 1,
        "campaign_name": "Free cone",
        "face_value": 500,
        "currency": "CNY",
        "issuer_merchant_id": 1,
        "issuer_name": "Cone & Co",
        "acceptor_merchant_id": 2,
        "acceptor_name": "Corner Shop",
        "proposed_at": "2026-12-02T03:59:14.614687Z",
        "accepted_at": "2026-12-02T03:59:15.260432Z",
        "ended_at": None,
        "ended_by": None,
    }
