"""Verify a merchant's list of codes in a worker process, never on the API's event loop.

Ed25519 verification holds the GIL: run in a thread, 3,000 checks raised the event loop's
median wake-up delay from 1.5 ms to 33 ms; in a worker process it stayed at 1.3 ms. So a
large void is parsed, deduplicated and verified in one worker process per API process (at
most one core, whatever the number of concurrent voids, at a lower CPU priority than the API
process), while the tills keep being answered.
"""

from __future__ import annotations

import functools
from concurrent.futures import ProcessPoolExecutor

from qrloop.codes.format import CodeRef, InvalidCode, RetiredKey, RevokedKey, Verifier, parse_input
from qrloop.codes.keyring import KeyRing, Purpose
from qrloop.parallel import lower_priority, process_pool, run_in_pool

# Fewer distinct codes than this are checked in place: it costs less than the hand-off.
IN_PLACE = 16


class VerifierPool:
    """One worker process, started at the first large request and kept for the next."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def verify_all(self, keyring: KeyRing, codes: list[str]) -> set[CodeRef] | int:
        """The codes' references, or the index (in `codes`) of the first that is not valid."""
        unique = list(dict.fromkeys(codes))
        if len(unique) < IN_PLACE:
            found = _verify(Verifier(keyring), unique)
        else:
            if self._pool is None:
                self._pool = process_pool(1, lower_priority, ())
            found = await run_in_pool(self._pool, _verify_with, _code_keys_json(keyring), unique)
        return found if isinstance(found, set) else codes.index(unique[found])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _code_keys_json(keyring: KeyRing) -> str:
    """Only the code keys go to the worker: it never sees token or claim secrets."""
    return KeyRing([e for e in keyring.entries() if e.purpose is Purpose.CODE]).to_json()


@functools.lru_cache(maxsize=2)
def _verifier(ring_json: str) -> Verifier:
    return Verifier(KeyRing.from_json(ring_json))


def _verify_with(ring_json: str, codes: list[str]) -> set[CodeRef] | int:
    return _verify(_verifier(ring_json), codes)


def _verify(verifier: Verifier, codes: list[str]) -> set[CodeRef] | int:
    """References of the codes (two spellings of one code are checked once), or the index of
    the first invalid one."""
    seen: set[str] = set()
    refs = set()
    for index, raw in enumerate(codes):
        try:
            text = parse_input(raw)
            if text not in seen:
                seen.add(text)
                refs.add(verifier.verify(text))
        except (InvalidCode, RevokedKey, RetiredKey):
            return index
    return refs
