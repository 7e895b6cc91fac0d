"""Many hosts, nothing shared but the stores: two API processes, two settlement workers and two
order signers, each on a host of its own (tests/hosts.py), under till load with a worker
killed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from hosts import Host, TcpStores, hosts, tcp_stores
from qrloop.codes.keyring import KeyRing, ensure_dev_keys
from support import (
    Attempt,
    Load,
    Merchant,
    Stack,
    Stores,
    eventually,
    fetch,
    fetchval,
    free_port,
    kill_holding_entries,
    pending_entries,
    scrape,
    settled_exactly_once,
    tills,
)

ROLES = ["api-1", "api-2", "worker-1", "worker-2", "signer-1", "signer-2"]
PARTITIONS = 16
CODES = 4_000  # redeemed, half through each API host
ORDERS = 4  # placed during the load, alternately on each API host
ORDER_QUANTITY = 20_000
PUBLIC_URL = "https://qr.example.test"
SETTLED = "SELECT count(*) FROM redemptions WHERE campaign_id = $1"
# A till that gets no answer scans again with the same nonce, and gets the first answer.
NO_ANSWER = frozenset({0})


@dataclass
class Deployment:
    """The running hosts, their processes' URLs, and the operator's view from this machine."""

    how: str  # namespaces, or process trees: said in the test's output
    hosts: dict[str, Host]
    urls: dict[str, str]  # role -> http://address:port of its API or probe listener
    processes: dict[str, subprocess.Popen[bytes]]
    env: dict[str, str]  # each role's environment, before its own settings
    stores: TcpStores

    def operator(self, api: str) -> Stack:
        """This machine acting on the stores, and calling the API host `api`."""
        folder = self.hosts[api].folder.parent / "operator"
        env = {
            **self.env,
            "DATABASE_URL": self.stores.database_url("127.0.0.1"),
            "REDIS_URL": self.stores.redis_url("127.0.0.1"),
        }
        stores = Stores(env["DATABASE_URL"], env["REDIS_URL"])
        return Stack(self.urls[api], env, stores, folder)

    def start(self, role: str) -> subprocess.Popen[bytes]:
        """Start the role's process on its host, with the host's own folders."""
        host = self.hosts[role]
        port = self.urls[role].rsplit(":", 1)[1]
        env = {
            **self.env,
            "DATABASE_URL": self.stores.database_url(host.gateway),
            "REDIS_URL": self.stores.redis_url(host.gateway),
            "QRLOOP_DATA_DIR": str(host.folder / "data"),
            "QRLOOP_KEYS_DIR": str(host.folder / "keys"),
            "PROMETHEUS_MULTIPROC_DIR": str(host.folder / "metrics"),
            "QRLOOP_HOST": host.address,
            "QRLOOP_PORT" if role.startswith("api") else "QRLOOP_PROBE_PORT": port,
        }
        (host.folder / "metrics").mkdir(exist_ok=True)  # kept across the role's restarts
        process = host.qrloop(role.split("-")[0], env)
        self.processes[role] = process
        return process


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def deployment(scratch_dir: Path) -> Iterator[Deployment]:
    """Six hosts and the stores; the stores are migrated and initialised from this machine,
    as an operator would, before any host starts."""
    with hosts(ROLES, scratch_dir / "hosts") as (made, how):
        by_role = {host.name: host for host in made}
        gateways = [host.gateway for host in made]
        with tcp_stores(scratch_dir / "stores", gateways) as stores:
            ring = KeyRing()
            ensure_dev_keys(ring)
            env = {
                name: value
                for name, value in os.environ.items()
                if not name.startswith(("QRLOOP_", "DATABASE_URL", "REDIS_URL", "PROMETHEUS_"))
            }
            env |= {
                "QRLOOP_KEYRING": ring.to_json(),
                "QRLOOP_PUBLIC_URL": PUBLIC_URL,
                "QRLOOP_PARTITIONS": str(PARTITIONS),
                "QRLOOP_LOG_LEVEL": "warning",
                "QRLOOP_SIGNER_PROCESSES": "1",
                # The webhook endpoint below is an address on this machine's side.
                "QRLOOP_WEBHOOK_PRIVATE_NETWORKS": "true",
            }
            urls = {host.name: f"http://{host.address}:{free_port()}" for host in made}
            deployed = Deployment(how, by_role, urls, {}, env, stores)
            operator = deployed.operator("api-1")
            operator.workdir.mkdir()
            operator.cli("migrate")
            operator.cli("reconcile", "--rehydrate")
            try:
                for role in ROLES:
                    deployed.start(role)
                for role in ROLES:
                    try:
                        eventually(lambda role=role: _ready(urls[role]), within=90)
                    except AssertionError:
                        raise AssertionError(f"{role} not ready:\n{by_role[role].logs()}") from None
                yield deployed
            finally:
                for host in made:
                    host.stop()


def _samples(url: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` (with these labels) in a host's /metrics."""
    return sum(
        sample.value
        for family in scrape(url).values()
        for sample in family
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _place_orders(merchants: list[Merchant], campaign: int) -> list[int]:
    """Orders placed alternately through each API host."""
    ids = []
    for number in range(ORDERS):
        merchant = merchants[number % len(merchants)]
        order = merchant.created(f"/v1/campaigns/{campaign}/orders", {"quantity": ORDER_QUANTITY})
        ids.append(order["id"])
    return ids


def test_hosts_share_nothing_but_the_stores(deployment: Deployment) -> None:
    """Six hosts (API, settlement worker and signer, two of each) reach PostgreSQL and Valkey
    over TCP and share no folder. An order's CSV, derived on demand, is the same bytes from
    either API host and matches the SHA-256 the signer recorded. 4,000 redemptions (half
    through each API host, 4 tills) run while orders are placed and one worker is kill -9'd
    holding unacknowledged entries (its host starts a new one). Every code ends answered 200
    (a till scans again, with the same nonce, when it got no answer); PostgreSQL ends with
    exactly one row and one balanced ledger transaction per redemption answered; each order
    completes once (done == quantity, digest recorded, one order.completed event). Each
    host's own /metrics counts its own work: an API host's redeemed answers are the 200s it
    gave, the signers' codes signed add up to the codes ordered, and the restarted worker's
    host still counts what its killed process settled."""
    print(f"hosts: {deployment.how}")
    d = deployment
    stack_1, stack_2 = d.operator("api-1"), d.operator("api-2")
    merchant = stack_1.new_merchant()
    merchants = [merchant, Merchant(stack_2, merchant.id, merchant.api_key)]
    hook = merchant.created(
        "/v1/webhooks",
        {"url": f"http://{d.hosts['api-1'].gateway}:9/hooks", "events": ["order.completed"]},
    )
    assert hook["active"]
    campaign = merchant.campaign(platform_fee=25)
    tokens = tills(merchant, 4)

    order = merchant.order(campaign, CODES)
    exports = [m.get(f"/v1/orders/{order['id']}/codes", format="csv") for m in merchants]
    assert exports[0].content == exports[1].content
    digest = hashlib.sha256(exports[0].content).hexdigest()
    assert {e.headers["etag"] for e in exports} == {f'"{digest}"'}
    codes = [line.split(",")[0] for line in exports[0].text.splitlines()[1:]]
    assert all(
        line.split(",")[2].startswith(PUBLIC_URL + "/c/")
        for line in exports[0].text.splitlines()[1:]
    )

    client = redis.Redis.from_url(d.stores.redis_url("127.0.0.1"))
    half = CODES // 2
    loads = [
        Load(d.urls["api-1"], tokens, codes[:half], concurrency=16, rate=100, retry=NO_ANSWER),
        Load(d.urls["api-2"], tokens, codes[half:], concurrency=16, rate=100, retry=NO_ANSWER),
    ]
    with loads[0], loads[1]:
        orders = _place_orders(merchants, campaign)
        eventually(lambda: fetchval(stack_1, SETTLED, campaign) >= 300, within=90)
        settled_before_kill = _samples(d.urls["worker-1"], "qrloop_settlement_lag_seconds_count")
        held = kill_holding_entries(d.processes["worker-1"], client, PARTITIONS)
        answered_at_kill = sum(load.count() for load in loads)
        d.start("worker-1")
        attempts = [load.finish(within=180) for load in loads]

    assert answered_at_kill < CODES, "the worker was killed after the load, not during it"
    every = attempts[0] + attempts[1]
    final = {a.code: a.status for a in every}  # a code's last answer is its final one
    assert Counter(final.values()) == {200: CODES}, d.hosts["api-1"].logs()
    redeemed = {a.redemption_id for a in every if a.redemption_id}
    assert len(redeemed) == CODES

    def settled() -> bool:
        if pending_entries(client, PARTITIONS):
            return False
        return bool(fetchval(stack_1, SETTLED, campaign) >= CODES)

    eventually(settled, within=150)
    settled_exactly_once(stack_1, campaign, redeemed)
    rows = fetch(stack_1, "SELECT stream_entry FROM redemptions WHERE campaign_id = $1", campaign)
    assert set(held) <= {row["stream_entry"] for row in rows}

    _orders_complete_once(stack_1, orders)
    _each_host_counts_its_own_work(d, attempts, settled_before_kill)


def _orders_complete_once(stack: Stack, orders: list[int]) -> None:
    """Every order is done with all its codes and a digest, and has one completion event."""

    def all_done() -> bool:
        statuses = fetch(stack, "SELECT status FROM orders WHERE id = ANY($1)", orders)
        return all(row["status"] == "done" for row in statuses)

    eventually(all_done, within=180)
    rows = fetch(
        stack, "SELECT done, quantity, export_sha256 FROM orders WHERE id = ANY($1)", orders
    )
    assert [(r["done"], r["quantity"]) for r in rows] == [(ORDER_QUANTITY,) * 2] * ORDERS
    assert all(len(r["export_sha256"]) == 32 for r in rows)
    events = fetch(
        stack,
        "SELECT (data->>'order_id')::bigint AS order_id FROM webhook_events"
        " WHERE type = 'order.completed'",
    )
    completed = Counter(row["order_id"] for row in events)
    assert {order: completed[order] for order in orders} == dict.fromkeys(orders, 1)


def _each_host_counts_its_own_work(
    d: Deployment, attempts: list[list[Attempt]], settled_before_kill: float
) -> None:
    redeemed = "qrloop_answers_total"
    for api, answers in zip(("api-1", "api-2"), attempts, strict=True):
        own = _samples(d.urls[api], redeemed, route="/v1/redeem", outcome="redeemed")
        # Exactly its 200s, plus any answer given that never reached the till (retried).
        assert sum(a.status == 200 for a in answers) <= own <= len(answers)
    signed = sum(_samples(d.urls[s], "qrloop_codes_signed_total") for s in ("signer-1", "signer-2"))
    assert signed == CODES + ORDERS * ORDER_QUANTITY
    restarted = _samples(d.urls["worker-1"], "qrloop_settlement_lag_seconds_count")
    assert restarted >= settled_before_kill > 0
    assert _samples(d.urls["worker-2"], "qrloop_settlement_lag_seconds_count") > 0
