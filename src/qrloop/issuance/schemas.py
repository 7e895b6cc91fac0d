"""Request and response bodies of the issuance routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from qrloop.accounts.schemas import Id, Name
from qrloop.pagination import Page, schema_name
from qrloop.text import text

Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Hours = Annotated[str, msgspec.Meta(pattern=r"^\d\d:\d\d-\d\d:\d\d$")]
ReversalWindow = Annotated[int, msgspec.Meta(ge=0, le=86_400)]
MAX_ORDER = 10_000_000


class CampaignIn(msgspec.Struct, forbid_unknown_fields=True):
    """`accepted_merchants`: other merchants proposed an acceptance agreement; their stores
    accept the codes once each accepts it (see /v1/agreements)."""

    name: Name
    face_value: Annotated[int, msgspec.Meta(ge=0, le=2**53)]
    currency: Currency
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    hours: Hours | None = None
    timezone: Annotated[str, text(max_length=64)] = "UTC"
    accepted_merchants: Annotated[list[Id], msgspec.Meta(max_length=1000)] = []
    algorithm: Literal["hmac-sha256", "ed25519"] = "hmac-sha256"
    reversal_window_s: ReversalWindow = 900
    platform_fee: Annotated[int, msgspec.Meta(ge=0, le=2**53)] = 0

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "name": "Free cone",
        "face_value": 500,
        "currency": "CNY",
        "valid_until": "2027-01-31T23:59:59+08:00",
        "hours": "10:00-22:00",
        "timezone": "Asia/Shanghai",
    }


class CampaignPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change; `null` clears an optional rule. `accepted_merchants`
    is the whole set of allies wanted: newly listed merchants are proposed an agreement, open
    agreements with merchants left out are ended."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    valid_from: datetime | msgspec.UnsetType | None = msgspec.UNSET
    valid_until: datetime | msgspec.UnsetType | None = msgspec.UNSET
    hours: Hours | msgspec.UnsetType | None = msgspec.UNSET
    timezone: Annotated[str, text(max_length=64)] | msgspec.UnsetType = msgspec.UNSET
    accepted_merchants: Annotated[list[Id], msgspec.Meta(max_length=1000)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    paused: bool | msgspec.UnsetType = msgspec.UNSET
    reversal_window_s: ReversalWindow | msgspec.UnsetType = msgspec.UNSET

    EXAMPLE: ClassVar[dict[str, Any]] = {"hours": None, "paused": True}


CampaignStatus = Literal["active", "paused", "ended"]
STATUS_RULE = (
    "`ended` once `valid_until` has passed, paused or not (it cannot be resumed into accepting"
    " codes); else `paused` while paused; else `active`, also before `valid_from`"
)


class CampaignOut(msgspec.Struct):
    """`accepted_merchants`: merchants whose stores accept the codes under an active
    agreement; `proposed_merchants`: those proposed one that have not accepted it."""

    id: int
    status: Annotated[CampaignStatus, msgspec.Meta(description=STATUS_RULE)]
    name: str
    face_value: int
    currency: str
    valid_from: datetime | None
    valid_until: datetime | None
    hours: str | None
    timezone: str
    accepted_merchants: list[int]
    proposed_merchants: list[int]
    algorithm: str
    paused: bool
    reversal_window_s: int
    platform_fee: int

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 1,
        "status": "active",
        "name": "Free cone",
        "face_value": 500,
        "currency": "CNY",
        "valid_from": None,
        "valid_until": "2027-01-31T15:59:59Z",
        "hours": "10:00-22:00",
        "timezone": "Asia/Shanghai",
        "accepted_merchants": [],
        "proposed_merchants": [],
        "algorithm": "hmac-sha256",
        "paused": False,
        "reversal_window_s": 900,
        "platform_fee": 0,
    }


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_ORDER)]

    EXAMPLE: ClassVar[dict[str, Any]] = {"quantity": 1000}


class OrderOut(msgspec.Struct):
    """`quantity` codes from `first_serial`, of which `done` are signed."""

    id: int
    campaign_id: int
    status: str
    quantity: int
    done: int
    first_serial: int

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "id": 1,
        "campaign_id": 1,
        "status": "queued",
        "quantity": 1000,
        "done": 0,
        "first_serial": 0,
    }


class SerialRange(msgspec.Struct, forbid_unknown_fields=True):
    campaign_id: Id
    first_serial: Annotated[int, msgspec.Meta(ge=0)]
    last_serial: Annotated[int, msgspec.Meta(ge=0)]


Codes = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=200)]],
    msgspec.Meta(min_length=1, max_length=10_000),
]


class VoidIn(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of: `codes`, a serial `range` of a campaign, or an `order_id`."""

    codes: Codes | None = None
    range: SerialRange | None = None
    order_id: Id | None = None

    EXAMPLE: ClassVar[dict[str, Any]] = {"codes": ["AEAQAAAAAEAAAAAAAAAKAATF6E2DN4RKYJH2DBPVFPO7G"]}


class VoidOut(msgspec.Struct):
    voided: int

    EXAMPLE: ClassVar[dict[str, Any]] = {"voided": 1}


class CampaignStats(msgspec.Struct):
    """`redeemed`, `claimed`, `voided`: the live state (a reversed code is free again).
    `settled`, `reversed`: redemptions and reversals booked in the ledger; once settlement has
    caught up, redeemed = settled - reversed. `settled_value` and `platform_fees`: what the
    ledger holds for the campaign, in minor units of `currency`, net of reversals."""

    issued: int
    claimed: int
    redeemed: int
    reversed: int
    voided: int
    settled: int
    currency: str
    settled_value: int
    platform_fees: int

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "issued": 1000,
        "claimed": 120,
        "redeemed": 87,
        "reversed": 2,
        "voided": 10,
        "settled": 89,
        "currency": "CNY",
        "settled_value": 43500,
        "platform_fees": 0,
    }


CampaignPage = Annotated[Page[CampaignOut], schema_name("CampaignPage")]
OrderPage = Annotated[Page[OrderOut], schema_name("OrderPage")]
