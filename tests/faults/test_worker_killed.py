"""kill -9 of the settlement worker in the middle of a batch, under load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import Callable

import redis

from qrloop import keyspace
from qrloop.settings import load as load_settings
from support import Load, Stack, eventually, fetch, fetchval, settled_exactly_once, tills

CODES = 10_000
SETTLED = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"


def _held(client: redis.Redis, partitions: int, worker_pid: int) -> list[str]:
    """Ids of the stream entries the worker's consumers (named `<host>-<pid>-<n>`) have read
    and not acknowledged."""
    prefix = f"{socket.gethostname()}-{worker_pid}-".encode()
    held = []
    for partition in range(partitions):
        pending = client.xpending_range(
            keyspace.events(partition), keyspace.SETTLEMENT_GROUP, "-", "+", CODES
        )
        held += [e["message_id"].decode() for e in pending if e["consumer"].startswith(prefix)]
    return held


def _pending(client: redis.Redis, partitions: int) -> int:
    """Entries read by some consumer of the settlement group and not acknowledged."""
    return sum(
        int(client.xpending(keyspace.events(p), keyspace.SETTLEMENT_GROUP)["pending"])
        for p in range(partitions)
    )


def _kill_holding_entries(
    worker: subprocess.Popen[bytes], client: redis.Redis, partitions: int
) -> list[str]:
    """SIGKILL the worker at a moment it holds entries read but not acknowledged (frozen with
    SIGSTOP while that is checked); return those entries' ids."""
    held: list[str] = []

    def frozen_holding_entries() -> bool:
        os.kill(worker.pid, signal.SIGSTOP)
        held.extend(_held(client, partitions, worker.pid))
        if not held:
            os.kill(worker.pid, signal.SIGCONT)
        return bool(held)

    eventually(frozen_holding_entries, within=30)
    worker.kill()
    worker.wait()
    return held


def test_worker_killed_mid_batch_settles_every_redemption_exactly_once(
    workerless: Stack, spawn: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    """10,000 redemptions at 48 concurrent requests from 4 tills; the worker is kill -9'd while
    it holds entries read but not acknowledged (committed or not: the kill may fall between
    commit and XACK), and a new worker, a new consumer, is started. Every redeem answers 200;
    the new worker reclaims the dead consumer's entries once they are idle 30 s, until nothing
    is pending; then PostgreSQL holds exactly one row per 200 answer (every redeemed code, the
    held entries included, no duplicates), each booked by exactly one balanced ledger
    transaction, however often its entry was delivered."""
    stack = workerless
    partitions = load_settings(stack.env).partitions
    client = redis.Redis.from_url(stack.stores.redis_url)
    spawn("signer")
    merchant = stack.new_merchant()
    tokens = tills(merchant, 4)
    campaign = merchant.campaign(platform_fee=25)
    codes = merchant.codes(campaign, CODES)

    first = spawn("worker")
    with Load(stack.base_url, tokens, codes, concurrency=48) as load:
        eventually(lambda: fetchval(stack, SETTLED, campaign) >= 500, within=60)
        held = _kill_holding_entries(first, client, partitions)
        answered_at_kill = load.count()
        spawn("worker")
        attempts = load.finish(within=120)

    assert answered_at_kill < CODES, "the worker was killed after the load, not during it"
    assert Counter(a.status for a in attempts) == {200: CODES}
    redeemed = {a.redemption_id for a in attempts if a.redemption_id}
    assert len(redeemed) == CODES

    def settled() -> bool:
        # Nothing pending (the dead consumer's entries reclaimed and acknowledged), all rows in.
        if _pending(client, partitions):
            return False
        return bool(fetchval(stack, SETTLED, campaign) >= CODES)

    eventually(settled, within=90)
    settled_exactly_once(stack, campaign, redeemed)
    query = "SELECT stream_entry FROM redemptions WHERE campaign_id = $1"
    assert set(held) <= {row["stream_entry"] for row in fetch(stack, query, campaign)}
