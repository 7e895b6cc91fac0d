"""One-time codes: proof that the person in front of this browser reads the identifier's messages.

A challenge is bound to one link (its scope) and to the browser that asked (the challenge id
lives only in that browser's HttpOnly cookie). Redis keeps a keyed hash of the code, never the
code, and the person's keyed hashes, never the identifier.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from importlib import resources

from redis.typing import EncodableT, FieldT

from qrloop import keyspace
from qrloop.claim import sendcaps
from qrloop.claim.consumers import Consumer, keyed
from qrloop.claim.texts import Refusal
from qrloop.codes.keyring import Algorithm, KeyRing, Purpose
from qrloop.errors import Reason
from qrloop.redis_client import Client

COOKIE = "qrloop_otp"
DIGITS = 6
VALID_SECONDS = 10 * 60
TRIES_PER_CODE = 5
SENDS_PER_HOUR = 5
_TRY = resources.files(__package__).joinpath("otp_try.lua").read_text()


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str  # goes into the asking browser's cookie
    code: str  # goes to the identifier; never stored


async def start(
    client: Client, keyring: KeyRing, consumer: Consumer, scope: str, hint: str
) -> Challenge:
    """A new code for `consumer` on the link `scope`; its send is counted before (`sendcaps`)."""
    challenge = Challenge(secrets.token_urlsafe(24), f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}")
    key = keyring.signing_key(Purpose.CONSUMER, Algorithm.HMAC_SHA256)
    stored: dict[FieldT, EncodableT] = {
        "scope": scope,
        "consumer": consumer.pack(),
        "code": f"{key.id}:{_code_hash(key.secret, challenge.id, challenge.code)}",
        "hint": hint,
        "tries": 0,
    }
    name = keyspace.otp_challenge(challenge.id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(name, mapping=stored)
        pipe.expire(name, VALID_SECONDS)
        await pipe.execute()
    return challenge


async def pending(client: Client, challenge_id: str | None, scope: str) -> str | None:
    """The masked recipient of this browser's live challenge on this link, if it has one."""
    if not challenge_id:
        return None
    fields: list[bytes | None] = await client.hmget(  # type: ignore[assignment]
        keyspace.otp_challenge(challenge_id), ["scope", "hint"]
    )
    found_scope, hint = fields
    if found_scope is None or hint is None or found_scope.decode() != scope:
        return None
    return hint.decode()


async def prove(
    client: Client, keyring: KeyRing, challenge_id: str | None, scope: str, code: str
) -> Consumer:
    """The person the code was sent to, if `code` is right; each try counts, the code works once."""
    expired = Refusal(Reason.BAD_REQUEST, "error.otp_expired")
    if not challenge_id:
        raise expired
    name = keyspace.otp_challenge(challenge_id)
    answer = await client.register_script(_TRY)(keys=[name], args=[scope])
    if not answer:
        raise expired
    tries, stored, packed = int(answer[0]), answer[1].decode(), answer[2].decode()
    if tries > TRIES_PER_CODE:
        await client.delete(name)
        raise _too_many()
    if not _right(keyring, stored, challenge_id, code):
        if tries >= TRIES_PER_CODE:
            await client.delete(name)
            raise _too_many()
        left = TRIES_PER_CODE - tries
        raise Refusal(Reason.BAD_REQUEST, "error.otp_wrong", {"left": left})
    if not await client.delete(name):  # a concurrent try used it first
        raise expired
    return Consumer.unpack(packed)


def _right(keyring: KeyRing, stored: str, challenge_id: str, code: str) -> bool:
    key_id, _, expected = stored.partition(":")
    key = keyring.get(int(key_id)) if key_id.isdigit() else None
    if key is None or key.purpose is not Purpose.CONSUMER:
        return False
    typed = "".join(code.split())
    return hmac.compare_digest(_code_hash(key.secret, challenge_id, typed), expected)


def _code_hash(secret: bytes, challenge_id: str, code: str) -> str:
    return keyed(secret, f"otp\x00{challenge_id}\x00{code}")


def _too_many() -> Refusal:
    return Refusal(Reason.RATE_LIMITED, "error.otp_too_many")


async def person_cap(client: Client, consumer: Consumer) -> sendcaps.Cap:
    """The person's cap of SENDS_PER_HOUR, counted under the newest hash. Sends counted under
    an older consumer key count too: what is left for the newest is the cap less those."""
    older = 0
    if len(consumer.hashes) > 1:
        async with client.pipeline(transaction=False) as pipe:
            for hashed in consumer.hashes[1:]:
                pipe.get(keyspace.otp_sends(hashed))
            older = sum(int(count or 0) for count in await pipe.execute())
    return sendcaps.per_person(keyspace.otp_sends(consumer.newest), SENDS_PER_HOUR - older)


def masked(recipient: str) -> str:
    """Enough of the recipient for its owner to recognise it: 'a•••@example.com', '•••• 0001'."""
    local, at, domain = recipient.partition("@")
    if at:
        return f"{local[:1]}•••@{domain}"
    return f"•••• {recipient[-4:]}"
