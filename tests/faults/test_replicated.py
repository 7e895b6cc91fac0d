"""QRLOOP_REDIS_DURABILITY=replicated: a redemption is answered 200 only once WAITAOF has
seen it on the primary's AOF and on a replica's; otherwise 503, and the till's retry with the
same nonce gets the 200 once it is confirmed."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrloop import keyspace
from redis_servers import (
    QRLOOP_PASSWORD,
    RedisServer,
    add_qrloop_user,
    start_replica,
    start_server,
)
from support import (
    Stack,
    Stores,
    eventually,
    fetchval,
    reason,
    redeem,
    serving_on_redis,
    settled_exactly_once,
    tills,
)

CONFIRM_MS = 300
SETTLED = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"


@pytest.fixture
def replicated(stores: Stores, scratch_dir: Path) -> Iterator[tuple[Stack, RedisServer]]:
    """A stack with durability `replicated` on a Valkey primary with one replica, both of the
    test's own, reached as qrloop's ACL user (the README's permissions, WAITAOF among them)."""
    primary = start_server(scratch_dir / "primary")
    replica = None
    try:
        replica = start_replica(primary, scratch_dir / "replica")
        add_qrloop_user(primary.admin(), QRLOOP_PASSWORD)
        settings = {
            "QRLOOP_REDIS_DURABILITY": "replicated",
            "QRLOOP_REDIS_CONFIRM_MS": str(CONFIRM_MS),
        }
        url = primary.url("qrloop", QRLOOP_PASSWORD)
        with serving_on_redis(stores.database_url, url, scratch_dir / "serve", **settings) as stack:
            yield stack, replica
    finally:
        if replica is not None:
            os.kill(replica.process.pid, signal.SIGCONT)
            replica.stop()
        primary.stop()


def _on_replica(replica: RedisServer, redemption_id: str) -> bool:
    """Whether the replica holds the code's last use written by that redemption."""
    campaign, serial, _ = map(int, redemption_id.split("-"))
    partition = keyspace.partition_of(campaign, serial, 16)
    return replica.admin().get(keyspace.last_use(partition, campaign, serial)) is not None


def test_a_redemption_is_answered_only_once_a_replica_holds_it(
    replicated: tuple[Stack, RedisServer],
) -> None:
    """With the replica running, a 200 means the replica already holds the redemption. With
    the replica stopped (SIGSTOP), scans answer 503 unavailable within the confirmation time,
    whatever the till. Once it runs again, each till's retry with its nonce gets 200 (the
    same redemption, not a second one), any other scan of those codes 409, and PostgreSQL
    settles exactly the redemptions answered 200."""
    stack, replica = replicated
    merchant = stack.new_merchant()
    first, second = tills(merchant, 2)
    campaign = merchant.campaign()
    codes = merchant.codes(campaign, 3)

    answered = redeem(stack, first, codes[0])
    assert answered.status_code == 200, answered.text
    assert _on_replica(replica, answered.json()["redemption_id"])

    nonces = [uuid.uuid4().hex, uuid.uuid4().hex]
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        while_stopped = [
            redeem(stack, first, codes[1], nonces[0]),
            redeem(stack, second, codes[2], nonces[1]),
            redeem(stack, second, codes[0]),  # a refusal is not confirmed either
        ]
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    assert [(r.status_code, reason(r)) for r in while_stopped] == [(503, "unavailable")] * 3

    retried = [
        redeem(stack, first, codes[1], nonces[0]),
        redeem(stack, second, codes[2], nonces[1]),
    ]
    assert [r.status_code for r in retried] == [200, 200], [r.text for r in retried]
    ids = {answered.json()["redemption_id"], *(r.json()["redemption_id"] for r in retried)}
    assert {i.rsplit("-", 1)[1] for i in ids} == {"1"}, "each code was consumed once"
    assert all(_on_replica(replica, i) for i in ids)
    for code in codes:
        assert reason(redeem(stack, first, code)) == "already_redeemed"
        assert reason(redeem(stack, second, code)) == "already_redeemed"
    eventually(lambda: fetchval(stack, SETTLED, campaign) >= 3, within=30)
    settled_exactly_once(stack, campaign, ids)
