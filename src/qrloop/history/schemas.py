"""Bodies of the history routes: settled redemptions, and what a lookup says of one code."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

import msgspec

from qrloop.redemption.schemas import RawCode


class Side(StrEnum):
    """Which of the caller's redemptions: of its campaigns, or at its stores."""

    ISSUER = "issuer"
    ACCEPTOR = "acceptor"


class ListFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class RedemptionOut(msgspec.Struct):
    """One settled redemption. `issuer_merchant_id` owes the face value to
    `accepting_merchant_id`, whose store and terminal accepted the code (the same merchant when
    a campaign's own store did); `reversed_at` is set once a reversal of it is settled."""

    redemption_id: str
    campaign_id: int
    campaign_name: str
    serial: int
    use_no: int
    redeemed_at: datetime
    reversed_at: datetime | None
    face_value: int
    currency: str
    issuer_merchant_id: int
    accepting_merchant_id: int
    store_id: int
    store_name: str
    terminal_id: int
    terminal_name: str

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "redemption_id": "1-2-1",
        "campaign_id": 1,
        "campaign_name": "Free cone",
        "serial": 2,
        "use_no": 1,
        "redeemed_at": "2026-12-02T03:59:15.585000Z",
        "reversed_at": None,
        "face_value": 500,
        "currency": "CNY",
        "issuer_merchant_id": 1,
        "accepting_merchant_id": 2,
        "store_id": 2,
        "store_name": "Corner",
        "terminal_id": 2,
        "terminal_name": "Till 1",
    }


# The CSV's columns: every field of a redemption, in its order.
CSV_COLUMNS = tuple(RedemptionOut.__struct_fields__)

State = Literal["issued", "claimed", "redeemed", "voided", "reversed"]


class LookupIn(msgspec.Struct, forbid_unknown_fields=True):
    """The code as scanned or typed: in the body, never in a URL, because it is redeemable."""

    code: RawCode

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "code": "AEAQA-AAAAE-AAAAA-AAAAK-B2DOM-LDT3D-ILG3C-HYVX2-4Y43S-S"
    }


class Use(msgspec.Struct):
    """One use of the code. `settled` is false while the redemption is on its way to the
    ledger (what the tills' state store knows: no reversal time yet). Another acceptor's store
    and terminal are shown only to the issuer; to an acceptor they are null."""

    redemption_id: str
    use_no: int
    redeemed_at: datetime
    settled: bool
    reversed_at: datetime | None
    accepting_merchant_id: int | None
    store_id: int | None
    store_name: str | None
    terminal_id: int | None
    terminal_name: str | None

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "redemption_id": "1-0-1",
        "use_no": 1,
        "redeemed_at": "2026-12-02T03:59:09.214000Z",
        "settled": True,
        "reversed_at": None,
        "accepting_merchant_id": 1,
        "store_id": 1,
        "store_name": "Flagship",
        "terminal_id": 1,
        "terminal_name": "Till 1",
    }


class LookupOut(msgspec.Struct):
    """What a code is now and every use it had. `state`: `issued` (nobody claimed it yet),
    `claimed` (by a consumer), `redeemed` (its latest use stands), `reversed` (its latest use
    was reversed, so it can be redeemed again), or `voided` (refused at every till, whatever
    it was before). `role` is the caller's side of the campaign."""

    campaign_id: int
    campaign_name: str
    serial: int
    state: State
    role: Literal["issuer", "acceptor"]
    issuer_merchant_id: int
    face_value: int
    currency: str
    uses: list[Use]

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "campaign_id": 1,
        "campaign_name": "Free cone",
        "serial": 0,
        "state": "redeemed",
        "role": "issuer",
        "issuer_merchant_id": 1,
        "face_value": 500,
        "currency": "CNY",
        "uses": [Use.EXAMPLE],
    }
