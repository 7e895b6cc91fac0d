"""Prometheus metrics, shared by every qrloop process through prometheus_client's multiprocess
mode: each process writes its samples to files in PROMETHEUS_MULTIPROC_DIR, and a scrape of
any API process sums them all.

Label values come only from code (route templates, the closed reason set), never from a
request, so no request can add a series or a line to the scrape.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Read once, when prometheus_client is first imported: `qrloop serve` and `qrloop api` set it.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"  # the route label of a request no route matched
# A few lines of a scrape, for the API's documentation.
EXAMPLE = """# HELP qrloop_answers_total Answers given, by route template and outcome.
# TYPE qrloop_answers_total counter
qrloop_answers_total{outcome="redeemed",route="/v1/redeem"} 1042.0
qrloop_answers_total{outcome="already_redeemed",route="/v1/redeem"} 3.0
# HELP qrloop_settlement_backlog Stream entries not yet settled into PostgreSQL.
# TYPE qrloop_settlement_backlog gauge
qrloop_settlement_backlog 0.0
"""

# Till answers take about a millisecond; the tail up to a few seconds still gets a bucket.
_TILL_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.5, 1, 2.5)
# Settlement runs behind the tills by tens of milliseconds to, after an outage, minutes.
_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

ANSWERS = Counter(
    "qrloop_answers",
    "Answers given, by route template and outcome (a reason, or redeemed).",
    ["route", "outcome"],
)
TILL_LATENCY = Histogram(
    "qrloop_till_seconds",
    "Time from a till request's arrival to its answer, by route.",
    ["route"],
    buckets=_TILL_BUCKETS,
)
SETTLEMENT_LAG = Histogram(
    "qrloop_settlement_lag_seconds",
    "Time from a redemption's answer at the till to its commit in PostgreSQL.",
    buckets=_LAG_BUCKETS,
)
CODES_SIGNED = Counter("qrloop_codes_signed", "Codes signed and written to order exports.")
CODES_TO_SIGN = Gauge(
    "qrloop_codes_to_sign",
    "Codes of the orders the running signers hold that are not signed yet.",
    multiprocess_mode="livesum",
)


def count_answer(route: str, outcome: str) -> None:
    _answer_counter(route, outcome).inc()


@functools.cache  # bounded: routes and outcomes come from code, never from a request
def _answer_counter(route: str, outcome: str) -> Counter:
    """The labelled child, looked up once (`labels()` takes a lock and checks each value)."""
    return ANSWERS.labels(route, outcome)


class _Gauges(Collector):
    """Gauges whose values were read at scrape time from the stores."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(settlement_backlog: int, dead_letters: int, webhooks: dict[str, int]) -> bytes:
    """Every process's metrics, and the shared gauges read from Redis and PostgreSQL now."""
    backlog = GaugeMetricFamily(
        "qrloop_settlement_backlog", "Stream entries not yet settled into PostgreSQL."
    )
    backlog.add_metric([], settlement_backlog)
    dead = GaugeMetricFamily(
        "qrloop_dead_letters", "Entries settlement could never read, parked for a person."
    )
    dead.add_metric([], dead_letters)
    deliveries = GaugeMetricFamily(
        "qrloop_webhook_deliveries",
        "Webhook deliveries still being tried, or given up.",
        labels=["status"],
    )
    for status in ("pending", "failed"):
        deliveries.add_metric([status], webhooks.get(status, 0))
    registry = _process_registry()
    registry.register(_Gauges([backlog, dead, deliveries]))
    return generate_latest(registry)


def render_processes() -> bytes:
    """Every process's metrics without the shared gauges: a worker's or signer's own scrape."""
    return generate_latest(_process_registry())


def _process_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:  # one process without the folder, as in-process tests and benchmarks run the app
        for metric in (ANSWERS, TILL_LATENCY, SETTLEMENT_LAG, CODES_SIGNED, CODES_TO_SIGN):
            registry.register(metric)
    return registry
