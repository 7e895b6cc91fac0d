"""Every Redis key qrloop uses is spelled here and nowhere else, and so is the KEYS list of
every Lua script: each is a named tuple below, built here, whose field names the script's
prologue gives to its keys (`qrloop.lua`), so the order is written once.

A code lives in partition hash(campaign, serial >> 20) mod P. Each key a Lua script touches for
that code carries the partition's hash tag `{pN}`, so one script call stays atomic on a single
Redis and on Redis Cluster alike, where the tag names the call's one hash slot.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import NamedTuple

CHUNK_BITS = 20  # 2^20 serials per bitmap chunk: at most 128 KiB per bitmap
CHUNK_MASK = (1 << CHUNK_BITS) - 1
SETTLEMENT_GROUP = "settlement"
# The latest use of a code is kept this long: longer than any reversal window may be, and
# longer than the 24 hours in which a till's retry (same terminal and nonce) is recognised.
LAST_USE_TTL_SECONDS = 25 * 60 * 60


def partition_of(campaign_id: int, serial: int, partitions: int) -> int:
    """The partition that holds this code's state; stable for a deployment's P."""
    chunk = serial >> CHUNK_BITS
    return zlib.crc32(campaign_id.to_bytes(4, "big") + chunk.to_bytes(4, "big")) % partitions


def _tag(partition: int) -> str:
    return f"qr:{{p{partition}}}"


def used_bitmap(partition: int, campaign_id: int, serial: int) -> str:
    return f"{_tag(partition)}:used:{campaign_id}:{serial >> CHUNK_BITS}"


def void_bitmap(partition: int, campaign_id: int, serial: int) -> str:
    return f"{_tag(partition)}:void:{campaign_id}:{serial >> CHUNK_BITS}"


def claimed_bitmap(partition: int, campaign_id: int, serial: int) -> str:
    return f"{_tag(partition)}:claimed:{campaign_id}:{serial >> CHUNK_BITS}"


def claim_owners(partition: int, campaign_id: int, serial: int) -> str:
    """Hash serial → keyed hash of the consumer who claimed the code."""
    return f"{_tag(partition)}:owner:{campaign_id}:{serial >> CHUNK_BITS}"


def last_use(partition: int, campaign_id: int, serial: int) -> str:
    """The code's latest redemption, packed: "use|terminal|store|at ms|reversed|nonce"."""
    return f"{_tag(partition)}:use:{campaign_id}:{serial}"


def reversal_counts(partition: int, campaign_id: int, serial: int) -> str:
    """Hash serial → how many times the code's redemptions were reversed (no expiry)."""
    return f"{_tag(partition)}:rev:{campaign_id}:{serial >> CHUNK_BITS}"


class RedeemKeys(NamedTuple):
    """KEYS of redemption/redeem.lua."""

    epoch: str
    used: str
    void: str
    events: str
    last_use: str
    reversal_counts: str


class CheckKeys(NamedTuple):
    """KEYS of redemption/check.lua."""

    epoch: str
    used: str
    void: str


class ReverseKeys(NamedTuple):
    """KEYS of redemption/reverse.lua."""

    epoch: str
    used: str
    last_use: str
    reversal_counts: str
    events: str


class ClaimKeys(NamedTuple):
    """KEYS of claim/claim.lua."""

    epoch: str
    claimed: str
    owners: str
    void: str
    used: str
    events: str


class VoidKeys(NamedTuple):
    """KEYS of issuance/void.lua: one bitmap chunk, so `serial` is any serial of that chunk."""

    void: str
    events: str


def redeem_keys(partition: int, campaign_id: int, serial: int) -> RedeemKeys:
    return RedeemKeys(
        epoch(partition),
        used_bitmap(partition, campaign_id, serial),
        void_bitmap(partition, campaign_id, serial),
        events(partition),
        last_use(partition, campaign_id, serial),
        reversal_counts(partition, campaign_id, serial),
    )


def check_keys(partition: int, campaign_id: int, serial: int) -> CheckKeys:
    return CheckKeys(
        epoch(partition),
        used_bitmap(partition, campaign_id, serial),
        void_bitmap(partition, campaign_id, serial),
    )


def reverse_keys(partition: int, campaign_id: int, serial: int) -> ReverseKeys:
    return ReverseKeys(
        epoch(partition),
        used_bitmap(partition, campaign_id, serial),
        last_use(partition, campaign_id, serial),
        reversal_counts(partition, campaign_id, serial),
        events(partition),
    )


def claim_keys(partition: int, campaign_id: int, serial: int) -> ClaimKeys:
    return ClaimKeys(
        epoch(partition),
        claimed_bitmap(partition, campaign_id, serial),
        claim_owners(partition, campaign_id, serial),
        void_bitmap(partition, campaign_id, serial),
        used_bitmap(partition, campaign_id, serial),
        events(partition),
    )


def void_keys(partition: int, campaign_id: int, serial: int) -> VoidKeys:
    return VoidKeys(void_bitmap(partition, campaign_id, serial), events(partition))


def bit_offset(serial: int) -> int:
    return serial & CHUNK_MASK


def chunk_spans(first: int, last: int) -> Iterator[tuple[int, int]]:
    """Serials [first, last] cut where bitmap chunks (and so perhaps partitions) change."""
    while first <= last:
        end = min(last, first | CHUNK_MASK)
        yield first, end
        first = end + 1


def events(partition: int) -> str:
    """The partition's stream of redemptions (and later reversals, claims, voids)."""
    return f"{_tag(partition)}:events"


def epoch(partition: int) -> str:
    """Present while the partition's state is intact; absent after a loss (fail closed)."""
    return f"{_tag(partition)}:epoch"


def dead_letters(stream: str) -> str:
    """Where the settlement worker parks an entry it can never settle."""
    return f"{stream}:dead"


def invalid_scans(terminal_id: int, window: int) -> str:
    """Invalid scans of one terminal in one rate-limit window (not touched by valid scans)."""
    return f"qr:rl:{terminal_id}:{window}"


def lookups(api_key_id: int, window: int) -> str:
    """Code lookups made with one API key in one rate-limit window (a minute)."""
    return f"qr:rl:lookup:{api_key_id}:{window}"


BLOCKED_TERMINALS = "qr:blocked"
"""Sorted set: terminal id → until when (unix seconds) it is refused for too many invalid scans."""


class PoolKeys(NamedTuple):
    """KEYS of claim/pool.lua and claim/pool_skip.lua: a pool's counter of codes handed out,
    and its hash consumer → codes taken."""

    counter: str
    taken: str


def pool_keys(pool_id: str) -> PoolKeys:
    """Both keys share the pool's own hash tag, so handing out the next code is one atomic
    script."""
    return PoolKeys(f"qr:{{pool:{pool_id}}}:next", f"qr:{{pool:{pool_id}}}:taken")


def otp_challenge(challenge_id: str) -> str:
    """Hash: a one-time code's keyed hash, the person it was sent to, its link, its tries."""
    return f"qr:otp:challenge:{challenge_id}"


def otp_sends(consumer_hash: str) -> str:
    """One-time codes sent to one person (under one consumer key) in the current hour."""
    return f"qr:otp:sends:{consumer_hash}"


def sends_per_link(campaign_id: int, serial: int) -> str:
    """Messages sent for one claim link (its code) in the current hour, whoever asked."""
    return f"qr:sends:link:{campaign_id}:{serial}"


def sends_per_pool(pool_id: str) -> str:
    """Messages sent for one pool link in the current hour, whoever asked."""
    return f"qr:sends:pool:{pool_id}"


def sends_per_address(address: str) -> str:
    """Messages asked for from one client address (an IPv6 /64) in the current hour."""
    return f"qr:sends:address:{address}"


def dashboard_session(token_digest: str) -> str:
    """Hash: a dashboard session (user, merchant, CSRF token, start), by the SHA-256 of its
    cookie, so the keys name no live session; expires when idle."""
    return f"qr:dash:session:{token_digest}"


def dashboard_logins_per_account(email_digest: str) -> str:
    """Dashboard login attempts for one email (by its SHA-256) in the current window."""
    return f"qr:dash:login:account:{email_digest}"


def dashboard_logins_per_address(address: str) -> str:
    """Failed dashboard logins from one client address (an IPv6 /64) in the current window."""
    return f"qr:dash:login:address:{address}"
