"""Latency of the till routes, measured in front of whatever answers them (the fast path or
the framework): from the request's arrival to the end of its answer."""

from __future__ import annotations

from time import perf_counter

from qrloop import metrics
from qrloop.redemption.fast import ASGIApp, Receive, Scope, Send

TIMED_ROUTES = ("/v1/redeem", "/v1/check")


def timed(app: ASGIApp) -> ASGIApp:
    """`app`, with each POST to a till route observed in the latency histogram."""
    histograms = {route: metrics.TILL_LATENCY.labels(route) for route in TIMED_ROUTES}

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        histogram = None
        if scope["type"] == "http" and scope["method"] == "POST":
            histogram = histograms.get(scope["path"])
        if histogram is None:
            await app(scope, receive, send)
            return
        start = perf_counter()
        try:
            await app(scope, receive, send)
        finally:
            histogram.observe(perf_counter() - start)

    return dispatch
