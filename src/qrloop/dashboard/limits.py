"""Limits on dashboard logins, against guessing passwords: per account (every attempt on one
email, cleared by a success) and per client address (failures only, so an office behind one
address can log in all day), each in a fixed 15-minute window.

An attempt is counted before its password is checked, so concurrent guesses cannot slip past
the limit together; a success gives its address count back. Unknown emails are counted as
known ones are: a refusal says nothing about who has an account.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from qrloop import keyspace
from qrloop.redis_client import Client
from qrloop.settings import Settings

WINDOW_SECONDS = 15 * 60


@dataclass(frozen=True, slots=True)
class Counters:
    account: str
    address: str


def counters(email: str, address: str) -> Counters:
    email_digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return Counters(
        keyspace.dashboard_logins_per_account(email_digest),
        keyspace.dashboard_logins_per_address(address),
    )


async def admit(client: Client, settings: Settings, keys: Counters) -> int | None:
    """Count the attempt; None when it may go ahead, else the seconds until it may (the
    attempt stays counted: a refused guess is still a guess)."""
    async with client.pipeline(transaction=False) as pipe:
        for key in (keys.account, keys.address):
            # Made with its expiry before it counts, so no counter can live forever.
            pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
        _, account, account_ttl, _, address, address_ttl = await pipe.execute()
    over = [
        ttl
        for count, limit, ttl in (
            (account, settings.dashboard_logins_per_account, account_ttl),
            (address, settings.dashboard_logins_per_ip, address_ttl),
        )
        if count > limit
    ]
    return max(1, *over) if over else None


async def succeeded(client: Client, keys: Counters) -> None:
    """A right password: the account's count is cleared, the address's attempt given back."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.delete(keys.account)
        # Kept with an expiry even if the window ended meanwhile.
        pipe.set(keys.address, 0, ex=WINDOW_SECONDS, nx=True)
        pipe.decr(keys.address)
        await pipe.execute()
