"""Caps on the messages strangers can make qrloop send (SMS pumping, mail spam through our
server): per person, per claim link, per pool link and per client address, each per hour.

Every cap is a counter of its own (one key, so one hash slot on a cluster). All caps of an
attempt are taken before anything is queued; a cap that refuses counts nothing, and the caps
already taken for the attempt are given back, so a refused attempt uses up no cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from qrloop import keyspace
from qrloop.claim.texts import Refusal
from qrloop.errors import Reason
from qrloop.redis_client import Client, loaded
from qrloop.settings import Settings

WINDOW_SECONDS = 3600
_TAKE = resources.files(__package__).joinpath("send_take.lua").read_text()
_GIVE_BACK = resources.files(__package__).joinpath("send_give_back.lua").read_text()

Scope = Literal["person", "link", "pool", "address"]


@dataclass(frozen=True, slots=True)
class Cap:
    scope: Scope
    key: str
    limit: int  # sends allowed in the window; 0 or less refuses every send


def per_person(key: str, limit: int) -> Cap:
    return Cap("person", key, limit)


def per_link(campaign_id: int, serial: int, settings: Settings) -> Cap:
    """A code has one owner: a few people may try its link, thousands may not."""
    key = keyspace.sends_per_link(campaign_id, serial)
    return Cap("link", key, settings.otp_sends_per_link_hour)


def per_pool(pool_id: str, size: int, settings: Settings) -> Cap:
    """A pool serves as many people as it has codes: its cap grows with its size."""
    limit = max(settings.otp_sends_per_pool_hour, settings.otp_sends_per_pool_code_hour * size)
    return Cap("pool", keyspace.sends_per_pool(pool_id), limit)


def per_address(address: str, settings: Settings) -> Cap:
    return Cap("address", keyspace.sends_per_address(address), settings.otp_sends_per_ip_hour)


async def take(client: Client, caps: Sequence[Cap]) -> None:
    """Count one send against every cap, or none of them and 429 naming the first that refused."""
    take_one = await loaded(client, _TAKE)
    async with client.pipeline(transaction=False) as pipe:
        for cap in caps:
            pipe.execute_command("EVALSHA", take_one, 1, cap.key, cap.limit, WINDOW_SECONDS)
        taken = [bool(answer) for answer in await pipe.execute()]
    if all(taken):
        return
    give_back = await loaded(client, _GIVE_BACK)
    async with client.pipeline(transaction=False) as pipe:
        for cap, counted in zip(caps, taken, strict=True):
            if counted:
                pipe.execute_command("EVALSHA", give_back, 1, cap.key)
        await pipe.execute()
    refused = next(cap for cap, counted in zip(caps, taken, strict=True) if not counted)
    raise Refusal(Reason.RATE_LIMITED, f"cap.{refused.scope}")
