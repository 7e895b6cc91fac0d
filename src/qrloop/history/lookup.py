"""A code's story for the merchants it concerns: its campaign, its state now, every use.

The code is verified as a till verifies it (a bad tag is `invalid`, one answer for every
forgery). Only its issuer and its acceptors (an active agreement on its campaign, or a use at
their own store) are told anything more; to every other merchant a genuine code is not found,
exactly as a code of a campaign that never existed, so a lookup proves nothing about another
merchant's campaigns. Lookups count against a per-key limit before anything is verified.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from qrloop import keyspace
from qrloop.codes.format import CodeRef, InvalidCode, Verifier, parse_input
from qrloop.errors import Problem, Reason
from qrloop.history.schemas import LookupOut, State, Use
from qrloop.redemption.store import RedemptionId
from qrloop.redis_client import Client

_WINDOW_SECONDS = 60
_NOT_FOUND = "No such code among this merchant's campaigns and acceptances."

# The campaign, if $2 may see it: its issuer, an acceptor under an active agreement, or a
# merchant whose store accepted a use of this very code ($3) before an agreement ended.
_CAMPAIGN = """
SELECT c.id, c.name, c.merchant_id, c.face_value, c.currency
FROM campaigns c
WHERE c.id = $1 AND (
    c.merchant_id = $2
    OR EXISTS (SELECT 1 FROM acceptance_agreements a WHERE a.campaign_id = c.id
               AND a.acceptor_merchant_id = $2 AND a.status = 'active')
    OR EXISTS (SELECT 1 FROM redemptions r WHERE r.campaign_id = c.id AND r.serial = $3
               AND r.accepting_merchant_id = $2)
)
"""

_USES = """
SELECT r.use_no, r.redeemed_at, v.reversed_at, r.accepting_merchant_id, r.store_id,
    s.name AS store_name, r.terminal_id, t.name AS terminal_name
FROM redemptions r
JOIN stores s ON s.id = r.store_id
JOIN terminals t ON t.id = r.terminal_id
LEFT JOIN reversals v USING (campaign_id, serial, use_no, redeemed_at)
WHERE r.campaign_id = $1 AND r.serial = $2
ORDER BY r.use_no
"""

_TILL = """
SELECT s.merchant_id AS accepting_merchant_id, s.id AS store_id, s.name AS store_name,
    t.id AS terminal_id, t.name AS terminal_name
FROM terminals t JOIN stores s ON s.id = t.store_id WHERE t.id = $1
"""


async def count(client: Client, api_key_id: int, per_minute: int) -> None:
    """Count one lookup against the key's minute; 429 with Retry-After once over the limit."""
    now = time.time()
    window = int(now // _WINDOW_SECONDS)
    key = keyspace.lookups(api_key_id, window)
    # The key is made with its expiry before it is counted, so it never lives without one;
    # no MULTI, which a cluster client does not take.
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(key, 0, ex=2 * _WINDOW_SECONDS, nx=True)
        pipe.incr(key)
        _, made = await pipe.execute()
    if made > per_minute:
        wait = max(1, math.ceil((window + 1) * _WINDOW_SECONDS - now))
        raise Problem(
            Reason.RATE_LIMITED,
            f"This API key made {per_minute} code lookups this minute; try again in {wait} s.",
            headers={"Retry-After": str(wait)},
            retry_after=wait,
        )


@dataclass(frozen=True, slots=True)
class _Bits:
    """What the tills' state store holds of one code."""

    used: bool
    voided: bool
    claimed: bool
    reversals: int
    last_use: bytes | None  # "use|terminal|store|at ms|reversed|nonce", for 25 hours

    @property
    def state(self) -> State:
        # The till's order: a voided code is refused whatever else is true of it.
        if self.voided:
            return "voided"
        if self.used:
            return "redeemed"
        if self.reversals:
            return "reversed"
        return "claimed" if self.claimed else "issued"


async def lookup(
    pool: asyncpg.Pool,
    client: Client,
    verifier: Verifier,
    partitions: int,
    merchant_id: int,
    raw_code: str,
) -> LookupOut:
    """The code's story for `merchant_id`: 422 for a code qrloop did not issue, 404 unless the
    merchant is a party to its campaign, 503 when the state store cannot say its state."""
    try:
        ref = verifier.identify(parse_input(raw_code))
    except InvalidCode:
        raise Problem(Reason.INVALID, "This is not a valid code.") from None
    campaign = await pool.fetchrow(_CAMPAIGN, ref.campaign_id, merchant_id, ref.serial)
    if campaign is None:
        raise Problem(Reason.NOT_FOUND, _NOT_FOUND)
    issuer = campaign["merchant_id"] == merchant_id
    bits = await _bits(client, partitions, ref)
    rows = [_UseRow(**row) for row in await pool.fetch(_USES, ref.campaign_id, ref.serial)]
    uses = [_use(ref, row, issuer, merchant_id, settled=True) for row in rows]
    pending = await _pending_use(pool, bits, {row.use_no for row in rows})
    if pending is not None:
        uses.append(_use(ref, pending, issuer, merchant_id, settled=False))
    return LookupOut(
        campaign_id=ref.campaign_id,
        campaign_name=campaign["name"],
        serial=ref.serial,
        state=bits.state,
        role="issuer" if issuer else "acceptor",
        issuer_merchant_id=campaign["merchant_id"],
        face_value=campaign["face_value"],
        currency=campaign["currency"],
        uses=uses,
    )


async def _bits(client: Client, partitions: int, ref: CodeRef) -> _Bits:
    """The code's bits in one round trip; 503 when its partition lost its state."""
    campaign_id, serial = ref.campaign_id, ref.serial
    partition = keyspace.partition_of(campaign_id, serial, partitions)
    offset = keyspace.bit_offset(serial)
    async with client.pipeline(transaction=False) as pipe:
        pipe.exists(keyspace.epoch(partition))
        pipe.getbit(keyspace.used_bitmap(partition, campaign_id, serial), offset)
        pipe.getbit(keyspace.void_bitmap(partition, campaign_id, serial), offset)
        pipe.getbit(keyspace.claimed_bitmap(partition, campaign_id, serial), offset)
        pipe.hget(keyspace.reversal_counts(partition, campaign_id, serial), str(serial))
        pipe.get(keyspace.last_use(partition, campaign_id, serial))
        epoch, used, voided, claimed, reversals, last_use = await pipe.execute()
    if not epoch:
        raise Problem(
            Reason.UNAVAILABLE,
            "The code's state is being restored; try again shortly.",
            headers={"Retry-After": "1"},
        )
    return _Bits(bool(used), bool(voided), bool(claimed), int(reversals or 0), last_use)


@dataclass(frozen=True, slots=True)
class _UseRow:
    """A use as PostgreSQL (or, before it settles, the state store) knows it."""

    use_no: int
    redeemed_at: datetime
    reversed_at: datetime | None
    accepting_merchant_id: int
    store_id: int
    store_name: str
    terminal_id: int
    terminal_name: str


async def _pending_use(pool: asyncpg.Pool, bits: _Bits, settled: set[int]) -> _UseRow | None:
    """The code's latest use while it is on its way to the ledger (the till answered, the
    settlement worker has not written it yet), as the state store remembers it."""
    if bits.last_use is None:
        return None
    use, terminal, _, at_ms, *_ = bits.last_use.split(b"|")
    if int(use) in settled:
        return None
    till = await pool.fetchrow(_TILL, int(terminal))
    if till is None:
        return None
    moment = datetime.fromtimestamp(int(at_ms) / 1000, tz=UTC)
    return _UseRow(use_no=int(use), redeemed_at=moment, reversed_at=None, **till)


def _use(ref: CodeRef, row: _UseRow, issuer: bool, merchant_id: int, settled: bool) -> Use:
    """One use as the caller may see it: another acceptor's till only by the issuer."""
    shown = issuer or row.accepting_merchant_id == merchant_id
    return Use(
        redemption_id=str(RedemptionId(ref.campaign_id, ref.serial, row.use_no)),
        use_no=row.use_no,
        redeemed_at=row.redeemed_at,
        settled=settled,
        reversed_at=row.reversed_at,
        accepting_merchant_id=row.accepting_merchant_id if shown else None,
        store_id=row.store_id if shown else None,
        store_name=row.store_name if shown else None,
        terminal_id=row.terminal_id if shown else None,
        terminal_name=row.terminal_name if shown else None,
    )
