"""Codes to void are grouped into runs of consecutive serials, one Redis call per run."""

from __future__ import annotations

from qrloop.codes.format import CodeRef
from qrloop.issuance.voids import coalesced


def test_consecutive_serials_of_a_campaign_become_one_range() -> None:
    """Serials 1, 2, 3 and 7 of campaign 5 and serial 3 of campaign 6 (also under a second
    key) are three ranges; a gap or another campaign starts a new one."""
    refs = {CodeRef(campaign_id=5, serial=serial, key_id=1) for serial in (3, 1, 7, 2)} | {
        CodeRef(campaign_id=6, serial=3, key_id=1),
        CodeRef(campaign_id=6, serial=3, key_id=2),
    }
    assert coalesced(refs) == [(5, 1, 3), (5, 7, 7), (6, 3, 3)]


def test_ten_thousand_codes_of_one_order_are_one_range() -> None:
    """A whole order's codes, voided one by one, cost one call."""
    refs = {CodeRef(campaign_id=9, serial=serial, key_id=1) for serial in range(10_000)}
    assert coalesced(refs) == [(9, 0, 9_999)]
