"""Dashboard passwords: argon2id with 64 MiB, 3 passes and one lane (RFC 9106's second
recommendation, t=3 and m=64 MiB, on one lane), hashed in a thread, one at a time per process.

A password is chosen by a person, so unlike API keys (256 random bits, a plain SHA-256) it
needs a slow, memory-hard hash. In the event loop a hash (about 200 ms) would stall the tills
served by the same process; one lane and one hash at a time keep it on one core, so a flood of
logins queues behind itself and leaves the other cores to the tills (benchmarks/RESULTS.md,
"Dashboard passwords"), and takes at most 64 MiB.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 256  # hashing cost does not grow with length, but a form field is no file
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)
_AT_ONCE = asyncio.Semaphore(1)
# Checked against when the email names nobody, so an unknown email takes as long to refuse
# as a wrong password (made once, at import, with the same parameters).
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


def weakness(password: str, email: str) -> str | None:
    """Why this password is refused, or None. Length is what matters (NIST SP 800-63B): no
    composition rules, but not the email itself."""
    if len(password) < MIN_LENGTH:
        return f"Choose a password of at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Choose a password of at most {MAX_LENGTH} characters."
    if email and email.lower() in password.lower():
        return "Choose a password that does not contain your email."
    return None


def refusal(password: str, again: str, email: str) -> str | None:
    """Why a new password typed twice is refused, or None."""
    weak = weakness(password, email)
    if weak is None and password != again:
        return "The two passwords differ."
    return weak


async def hashed(password: str) -> str:
    async with _AT_ONCE:
        return await asyncio.to_thread(_HASHER.hash, password)


def _matches(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def matches(stored: str | None, password: str) -> bool:
    """Whether `password` is the one hashed in `stored`; without a hash (no such person, or no
    password set yet), the same work is done against a dummy and the answer is no."""
    async with _AT_ONCE:
        found = await asyncio.to_thread(_matches, stored or _DUMMY_HASH, password)
    return found and stored is not None


def needs_rehash(stored: str) -> bool:
    """Whether `stored` was made with other parameters than today's (rehash at login)."""
    return _HASHER.check_needs_rehash(stored)
