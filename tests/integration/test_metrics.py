"""/metrics: labels only from route templates and reasons, one scrape for every process,
latency histograms, and a bearer token when one is configured."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from support import Stack, Stores, eventually, reason, redeem, scrape, serving, till

TOKEN = secrets.token_urlsafe(24)


def _answers(samples: dict[str, list[Sample]], route: str) -> float:
    return sum(s.value for s in samples["qrloop_answers"] if s.labels["route"] == route)


def test_random_paths_add_no_series(stack: Stack) -> None:
    """Attack: 1,000 requests to random /c/<token> paths, to grow the API's memory and the
    scrape by one series each. They all count under the route template, so the scrape stays
    the same size, and no path a client sent appears in it."""
    before = httpx.get(stack.base_url + "/metrics").text
    tokens = [secrets.token_hex(16) for _ in range(1000)]
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        for token in tokens:
            assert client.get(f"/c/{token}").status_code < 500
    after = httpx.get(stack.base_url + "/metrics").text
    assert len(after) - len(before) < 2000, "the scrape grew with the paths requested"
    assert not any(token in after for token in tokens)
    counted = _answers(scrape(stack.base_url), "/c/{token}")
    assert counted >= 1000


def test_a_crafted_path_cannot_inject_a_line(stack: Stack) -> None:
    """Attack: a path holding `"}` and a newline, to close the label and add a fake
    `qrloop_settlement_backlog 0` line (which can make Prometheus reject the scrape). The
    scrape still parses, with exactly one backlog sample."""
    crafted = '/c/x"}\nqrloop_settlement_backlog 0\n'
    assert httpx.get(stack.base_url + quote(crafted)).status_code < 500
    assert httpx.get(stack.base_url + quote(crafted + "/state")).status_code < 500
    text = httpx.get(stack.base_url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert len(families["qrloop_settlement_backlog"].samples) == 1
    assert "qrloop_settlement_backlog 0\n" not in text.replace("backlog 0.0\n", "")


def test_no_bearer_link_appears(stack: Stack) -> None:
    """Claim links and pool links are credentials: visiting them (valid or not) leaves no
    trace of them in /metrics."""
    merchant = stack.new_merchant()
    campaign_id = merchant.campaign()
    order = merchant.order(campaign_id, 3)
    pool = merchant.created(f"/v1/campaigns/{campaign_id}/pools", {"order_id": order["id"]})
    export = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv").text
    links = [line.split(",")[2] for line in export.splitlines()[1:]]
    secrets_seen = [pool["id"], *(link.rsplit("/", 1)[1] for link in links)]
    with httpx.Client(timeout=30) as browser:
        assert browser.get(pool["url"]).status_code == 200
        assert browser.get(pool["url"] + "x").status_code < 500
        for link in links:
            assert browser.get(link).status_code == 200
            assert browser.get(link + "/state").status_code == 200
            assert browser.post(link + "/claim", data={"identifier": ""}).status_code < 500
    text = httpx.get(stack.base_url + "/metrics").text
    assert not any(secret in text for secret in secrets_seen)


def test_till_latency_settlement_lag_and_signing_are_measured(stack: Stack) -> None:
    """A redeem and a check land in the till latency histogram under their routes, the
    redemption's settlement in the lag histogram (written by the worker process), and the
    signed codes in the signer's counter."""
    merchant = stack.new_merchant()
    store_id = merchant.created("/v1/stores", {"name": "Main"})["id"]
    token = merchant.terminal_token(store_id)
    signed_before = scrape(stack.base_url)["qrloop_codes_signed"][0].value
    lag_before = _count(stack, "qrloop_settlement_lag_seconds")
    code = merchant.codes(merchant.campaign(), 2)[0]
    assert till(stack, "/v1/check", token, {"code": code}).status_code == 200
    assert redeem(stack, token, code).status_code == 200
    samples = scrape(stack.base_url)
    assert samples["qrloop_codes_signed"][0].value >= signed_before + 2
    for route in ("/v1/redeem", "/v1/check"):
        buckets = [
            s
            for s in samples["qrloop_till_seconds"]
            if s.name == "qrloop_till_seconds_bucket" and s.labels["route"] == route
        ]
        assert buckets and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 1
    assert "qrloop_codes_to_sign" in samples
    eventually(lambda: _count(stack, "qrloop_settlement_lag_seconds") > lag_before, within=15)


def _count(stack: Stack, histogram: str) -> float:
    counts = [s.value for s in scrape(stack.base_url)[histogram] if s.name == histogram + "_count"]
    return sum(counts)


@pytest.fixture(scope="module")
def guarded_stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two API processes, and a metrics token."""
    folder = tmp_path_factory.mktemp("two-api-processes")
    with serving(stores, folder, QRLOOP_API_PROCESSES="2", QRLOOP_METRICS_TOKEN=TOKEN) as running:
        yield running


def test_metrics_need_the_token_when_one_is_set(guarded_stack: Stack) -> None:
    """With QRLOOP_METRICS_TOKEN set, /metrics answers 401 problem+json without the token or
    with a wrong one, and the metrics with it."""
    url = guarded_stack.base_url + "/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 401
        assert reason(refused) == "unauthorized"
    assert "qrloop_settlement_backlog" in scrape(guarded_stack.base_url, TOKEN)


def test_every_api_process_counts_in_one_scrape(guarded_stack: Stack) -> None:
    """With QRLOOP_API_PROCESSES=2, once both processes have answered some requests, every
    request counts in a scrape, whichever process answers the scrape."""
    sent = 0
    fresh_connections = httpx.Limits(max_keepalive_connections=0)  # any process may take each
    with httpx.Client(base_url=guarded_stack.base_url, limits=fresh_connections) as client:

        def both_processes_answered() -> bool:
            nonlocal sent
            for _ in range(50):
                refused = client.post(
                    "/v1/check", json={"code": "x"}, headers={"Authorization": "Bearer bad"}
                )
                assert refused.status_code == 401
                sent += 1
            return len(_processes_that_counted(guarded_stack, "/v1/check")) == 2

        eventually(both_processes_answered, within=60)

    def all_counted() -> bool:
        return _answers(scrape(guarded_stack.base_url, TOKEN), "/v1/check") == sent

    eventually(all_counted, within=15)
    for _ in range(5):  # each on a new connection: either process answers the same total
        assert _answers(scrape(guarded_stack.base_url, TOKEN), "/v1/check") == sent


def _processes_that_counted(stack: Stack, route: str) -> set[str]:
    """The processes (one metric file each) that counted answers on `route`."""
    counted = set()
    for file in (stack.workdir / ".qrloop" / "metrics").glob("counter_*.db"):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(file, alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=alone)  # type: ignore[no-untyped-call]
            samples = [s for family in registry.collect() for s in family.samples]
        if any(s.name == "qrloop_answers_total" and s.labels["route"] == route for s in samples):
            counted.add(file.stem)
    return counted
