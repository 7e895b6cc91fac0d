"""A key ring given as JSON in QRLOOP_KEYRING serves every process, with no key file at all."""

from __future__ import annotations

from pathlib import Path

from qrloop.codes.keyring import KeyRing, ensure_dev_keys
from support import Stores, eventually, fetchval, redeem, serving


def test_the_whole_loop_runs_on_a_keyring_from_the_environment(
    stores: Stores, tmp_path: Path
) -> None:
    """With the ring only in QRLOOP_KEYRING: an order is signed (the signer used to read only
    the file and failed every order), its export lists codes, a till redeems one once, and the
    worker settles it. No key file is ever written."""
    ring = KeyRing()
    ensure_dev_keys(ring)
    with serving(stores, tmp_path / "serve", QRLOOP_KEYRING=ring.to_json()) as stack:
        merchant = stack.new_merchant()
        token = merchant.terminal_token(merchant.created("/v1/stores", {"name": "S"})["id"])
        campaign = merchant.campaign()
        codes = merchant.codes(campaign, 3)
        assert len(codes) == 3
        assert redeem(stack, token, codes[0]).status_code == 200
        assert redeem(stack, token, codes[0]).status_code == 409
        settled = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"
        eventually(lambda: fetchval(stack, settled, campaign) == 1, within=30)
        assert not Path(stack.env["QRLOOP_KEYS_DIR"]).exists()
