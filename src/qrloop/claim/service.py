"""Claims and pools: what the consumer pages do, independent of HTML."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import asyncpg

from qrloop.claim import state
from qrloop.claim.consumers import Consumer
from qrloop.claim.texts import Refusal
from qrloop.codes.format import CodeRef, InvalidCode, RetiredKey, RevokedKey, Verifier
from qrloop.codes.keyring import KeyRing
from qrloop.errors import Problem, Reason
from qrloop.pagination import Page, newest_page, page_sql
from qrloop.redis_client import Client
from qrloop.rows import CAMPAIGN_COLUMNS, ORDER_COLUMNS, campaign_of, order_of

_COOKIE_DOMAIN = b"qrloop/claim-cookie/v1\x00"

_POOL_ID_BYTES = 12
_POOL_ID = re.compile(r"[A-Za-z0-9_-]{16}")  # token_urlsafe of those 12 bytes


@dataclass(frozen=True, slots=True)
class Offer:
    """The campaign as a consumer sees it."""

    name: str
    face_value: int
    currency: str
    valid_from: datetime | None
    valid_until: datetime | None
    hours: str | None
    timezone: str


def code_of(verifier: Verifier, claim_token: str) -> CodeRef:
    """The code behind a claim link, or 404: a bad link says nothing about why."""
    try:
        return verifier.verify_claim_token(claim_token)
    except (InvalidCode, RevokedKey, RetiredKey):
        raise Problem(Reason.NOT_FOUND, "This link is not valid.") from None


async def offer(pool: asyncpg.Pool, campaign_id: int) -> Offer:
    row = await pool.fetchrow(
        f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1", campaign_id
    )
    if row is None:
        raise Problem(Reason.NOT_FOUND, "This link is not valid.")
    campaign = campaign_of(row)
    return Offer(
        name=campaign.name,
        face_value=campaign.face_value,
        currency=campaign.currency,
        valid_from=campaign.valid_from,
        valid_until=campaign.valid_until,
        hours=campaign.hours,
        timezone=campaign.timezone,
    )


def consumer_state(found: state.CodeState, terms: Offer) -> str:
    """valid, used, voided, expired or not_yet_valid: what the consumer's badge says."""
    now = datetime.now(UTC)
    if found.voided:
        return "voided"
    if found.used:
        return "used"
    if terms.valid_until is not None and now >= terms.valid_until:
        return "expired"
    if terms.valid_from is not None and now < terms.valid_from:
        return "not_yet_valid"
    return "valid"


def ownership_cookie(keyring: KeyRing, claim_token: str, owner: str) -> str | None:
    """The cookie value that proves, on later visits, that this browser made the claim."""
    key_id, _, _ = owner.partition(":")
    key = keyring.get(int(key_id)) if key_id.isdigit() else None
    if key is None:
        return None
    message = _COOKIE_DOMAIN + claim_token.encode() + b"\x00" + owner.encode()
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()[:40]


def owns(keyring: KeyRing, claim_token: str, owner: str | None, cookie: str | None) -> bool:
    if owner is None or cookie is None:
        return False
    expected = ownership_cookie(keyring, claim_token, owner)
    return expected is not None and hmac.compare_digest(expected, cookie)


async def claim(client: Client, partitions: int, ref: CodeRef, consumer: Consumer) -> str:
    """Claim the code for this (verified) person; returns the stored owner hash. A code the
    person claimed before, under any consumer key still verifiable, is theirs again."""
    found = await state.read(client, partitions, ref)
    if found.owner is not None:
        if consumer.matches(found.owner):
            return found.owner
        raise _taken()
    outcome = await state.claim(client, partitions, ref, consumer.newest)
    if outcome != "claimed":
        raise _refusal(outcome)
    return consumer.newest


def _taken() -> Refusal:
    return Refusal(Reason.CONFLICT, "error.taken", state="taken")


def _refusal(outcome: str) -> Refusal:
    """Why the claim script would not bind the code."""
    if outcome == "taken":
        return _taken()
    if outcome == "voided":
        return Refusal(Reason.VOIDED, "error.voided", state="voided")
    if outcome == "used":
        return Refusal(Reason.ALREADY_REDEEMED, "error.used", state="used")
    return Refusal(Reason.UNAVAILABLE, "error.paused")


def refuse_unclaimable(found: state.CodeState) -> None:
    """Before sending a one-time code: a voided or used code can never be claimed."""
    if found.voided:
        raise _refusal("voided")
    if found.used:
        raise _refusal("used")


@dataclass(frozen=True, slots=True)
class Pool:
    id: str
    campaign_id: int
    first_serial: int
    size: int
    per_consumer: int
    key_id: int
    verification: str  # "otp": only verified identifiers take codes; "none": any typed one

    def serial(self, offset: int) -> int:
        return self.first_serial + offset


async def hand_out(
    client: Client, partitions: int, found: Pool, consumer: Consumer
) -> tuple[str, list[int]]:
    """The pool's next code for this person: ('assigned', [offset]) claimed for them,
    ('limit', offsets they hold) or ('empty', []).

    The pool's script reserves one of the person's places and an offset (the pool's hash
    slot); the partition's claim script then binds the code (the code's slot), refusing a
    voided, used or someone else's code, which is skipped for the next offset: skipped codes
    never count against anyone, and a pool that runs out gives the place back.
    """
    outcome, offsets = await state.reserve_from_pool(
        client, found.id, consumer, found.per_consumer, found.size
    )
    offset: int | None = offsets[0] if outcome == "assigned" else None
    while offset is not None:
        ref = CodeRef(found.campaign_id, found.serial(offset), found.key_id)
        claimed = await state.claim(client, partitions, ref, consumer.newest)
        if claimed == "claimed":
            return "assigned", [offset]
        if claimed == "unavailable":
            raise _refusal(claimed)
        offset = await state.skip_in_pool(client, found.id, consumer, found.size, offset)
    return ("empty", []) if outcome == "assigned" else (outcome, offsets)


async def create_pool(
    pool: asyncpg.Pool,
    merchant_id: int,
    campaign_id: int,
    order_id: int,
    per_consumer: int,
    verification: str,
) -> Pool:
    """A pool over a finished order of the merchant's campaign."""
    row = await pool.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders"
        " WHERE id = $1 AND campaign_id = $2 AND merchant_id = $3",
        order_id,
        campaign_id,
        merchant_id,
    )
    if row is None:
        raise Problem(Reason.NOT_FOUND, f"No order {order_id} of campaign {campaign_id} here.")
    order = order_of(row)
    if order.status != "done":
        raise Problem(Reason.CONFLICT, f"Order {order_id} is {order.status}, not done.")
    pool_id = secrets.token_urlsafe(_POOL_ID_BYTES)
    await pool.execute(
        "INSERT INTO pools (id, merchant_id, campaign_id, order_id, first_serial, size,"
        " per_consumer, verification) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        pool_id,
        merchant_id,
        campaign_id,
        order_id,
        order.first_serial,
        order.quantity,
        per_consumer,
        verification,
    )
    return Pool(
        pool_id,
        campaign_id,
        order.first_serial,
        order.quantity,
        per_consumer,
        order.key_id,
        verification,
    )


_POOL = "p.id, p.campaign_id, p.first_serial, p.size, p.per_consumer, o.key_id, p.verification"
_POOLS = "pools p JOIN orders o ON o.id = p.order_id"
# Paged by creation sequence: pool ids are random text.
POOLS_PAGE = page_sql(f"SELECT {_POOL}, p.seq FROM {_POOLS}", owner="p.merchant_id", key="p.seq")


def _pool(row: asyncpg.Record) -> Pool:
    return Pool(**{field.name: row[field.name] for field in fields(Pool)})


async def find_pool(pool: asyncpg.Pool, pool_id: str, merchant_id: int | None = None) -> Pool:
    if not _POOL_ID.fullmatch(pool_id):  # not one we made; may hold what PostgreSQL refuses
        raise Problem(Reason.NOT_FOUND, "This link is not valid.")
    row = await pool.fetchrow(
        f"SELECT {_POOL} FROM {_POOLS}"
        " WHERE p.id = $1 AND ($2::bigint IS NULL OR p.merchant_id = $2)",
        pool_id,
        merchant_id,
    )
    if row is None:
        raise Problem(Reason.NOT_FOUND, "This link is not valid.")
    return _pool(row)


async def pools(pool: asyncpg.Pool, merchant_id: int, cursor: str | None, limit: int) -> Page[Pool]:
    """A page of the merchant's pools, newest first."""
    return await newest_page(
        pool, POOLS_PAGE, merchant_id, cursor, limit, out=_pool, key_column="seq"
    )
