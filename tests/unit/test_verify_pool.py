"""A merchant's list of codes is deduplicated and verified in a worker process."""

from __future__ import annotations

from qrloop.codes import verify_pool
from qrloop.codes.format import CodeRef, Signer, to_typed
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from qrloop.codes.verify_pool import VerifierPool


def _ring_and_code() -> tuple[KeyRing, str, CodeRef]:
    ring = KeyRing()
    key = ring.generate(Purpose.CODE, Algorithm.ED25519)
    ring.generate(Purpose.TOKEN, Algorithm.ED25519)
    return ring, Signer(key).sign(7, 42), CodeRef(campaign_id=7, serial=42, key_id=key.id)


async def test_ten_thousand_copies_of_one_code_are_one_code() -> None:
    """CPU exhaustion by repetition: 10,000 copies of one Ed25519 code, in scanned and typed
    spellings, name one code (each distinct code is verified once)."""
    ring, code, ref = _ring_and_code()
    pool = VerifierPool()
    try:
        codes = [code, to_typed(code), to_typed(code).lower()] * 3_334
        assert await pool.verify_all(ring, codes) == {ref}
    finally:
        pool.close()


async def test_the_first_invalid_code_is_named_by_its_index_in_the_request() -> None:
    """A forged code among many copies is reported at its own index in the request."""
    ring, code, _ = _ring_and_code()
    forged = code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BBBB")
    pool = VerifierPool()
    try:
        assert await pool.verify_all(ring, [code] * 30 + [forged, "junk"]) == 30
        assert await pool.verify_all(ring, ["junk", code]) == 0
    finally:
        pool.close()


def test_the_worker_is_given_code_keys_only() -> None:
    """Secrets spread no further than needed: the worker process gets the ring's code keys,
    not its terminal token keys."""
    ring, _, _ = _ring_and_code()
    handed = KeyRing.from_json(verify_pool._code_keys_json(ring))
    assert [entry.purpose for entry in handed.entries()] == [Purpose.CODE]
