"""Bodies of the till routes."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec

from qrloop.redemption.decide import Redeemed

# Long enough for an Ed25519 code typed with dashes and spaces, short enough to bound work.
RawCode = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
NONCE_PATTERN = r"^[A-Za-z0-9_.:-]+$"
NONCE_MAX_LENGTH = 64
Nonce = Annotated[
    str, msgspec.Meta(min_length=1, max_length=NONCE_MAX_LENGTH, pattern=NONCE_PATTERN)
]


class RedeemIn(msgspec.Struct, forbid_unknown_fields=True):
    code: RawCode
    nonce: Nonce

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "code": "AEAQAAAAAEAAAAAAAAAKAATF6E2DN4RKYJH2DBPVFPO7G",
        "nonce": "till-1-scan-000042",
    }


class RedeemOut(msgspec.Struct):
    """`status` is `redeemed`, or `reversed` (with `reversed: true`) when a till retries a scan
    whose redemption was reversed since: the code was not consumed again.
    `issuer_merchant_id` and `issuer_name`: who owes the face value when the code is
    another merchant's (accepted under an agreement). `reversal_window_s`: how long after the
    redemption this till may reverse it (the campaign's window)."""

    status: str
    redemption_id: str
    campaign_id: int
    serial: int
    face_value: int
    currency: str
    issuer_merchant_id: int
    issuer_name: str
    reversed: bool
    reversal_window_s: int

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "status": "redeemed",
        "redemption_id": "1-0-1",
        "campaign_id": 1,
        "serial": 0,
        "face_value": 500,
        "currency": "CNY",
        "issuer_merchant_id": 1,
        "issuer_name": "Cone & Co",
        "reversed": False,
        "reversal_window_s": 900,
    }


def redeemed_body(redeemed: Redeemed) -> RedeemOut:
    return RedeemOut(
        status="reversed" if redeemed.reversed else "redeemed",
        redemption_id=redeemed.redemption_id,
        campaign_id=redeemed.ref.campaign_id,
        serial=redeemed.ref.serial,
        face_value=redeemed.rules.face_value,
        currency=redeemed.rules.currency,
        issuer_merchant_id=redeemed.rules.merchant_id,
        issuer_name=redeemed.rules.issuer_name,
        reversed=redeemed.reversed,
        reversal_window_s=redeemed.rules.reversal_window_ms // 1000,
    )


class ReverseOut(msgspec.Struct):
    status: str
    redemption_id: str

    EXAMPLE: ClassVar[dict[str, Any]] = {"status": "reversed", "redemption_id": "1-0-1"}


class CheckIn(msgspec.Struct, forbid_unknown_fields=True):
    code: RawCode

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "code": "AEAQA-AAAAE-AAAAA-AAAAK-AATF6-E2DN4-RKYJH-2DBPV-FPO7G-2"
    }


class CheckOut(msgspec.Struct, omit_defaults=True):
    status: str
    detail: str | None = None
    campaign_id: int | None = None
    face_value: int | None = None
    currency: str | None = None
    issuer_merchant_id: int | None = None
    issuer_name: str | None = None

    EXAMPLE: ClassVar[dict[str, Any]] = {
        "status": "valid",
        "campaign_id": 1,
        "face_value": 500,
        "currency": "CNY",
        "issuer_merchant_id": 1,
        "issuer_name": "Cone & Co",
    }
