"""Request and response bodies of the agreement routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from qrloop.accounts.schemas import Id

Status = Literal["proposed", "active", "ended"]
Side = Literal["issuer", "acceptor"]


class AgreementIn(msgspec.Struct, forbid_unknown_fields=True):
    campaign_id: Id
    acceptor_merchant_id: Id


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
