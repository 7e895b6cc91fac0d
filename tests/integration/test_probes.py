"""Worker and signer processes answer health and metrics probes on QRLOOP_PROBE_PORT, so an
orchestrator can check them and a host that runs no API can still be scraped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from support import Stack, Stores, eventually, free_port, serving


@pytest.fixture(scope="module")
def apiless(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack that runs its API only: the tests start workers and signers themselves."""
    folder = tmp_path_factory.mktemp("probes")
    with serving(stores, folder, QRLOOP_RUN_WORKER="false") as stack:
        yield stack


def _start(stack: Stack, command: str, **settings: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "qrloop", command],
        env={**stack.env, "QRLOOP_PROBE_PORT": str(port), **settings},
        cwd=stack.workdir,
    )
    return process, f"http://127.0.0.1:{port}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.terminate()
    return process.wait(timeout=30)


@pytest.mark.parametrize("command", ["worker", "signer"])
def test_a_worker_or_signer_is_live_ready_and_scrapeable(apiless: Stack, command: str) -> None:
    """/health/live and /health/ready answer 200 once the process runs, /metrics serves the
    Prometheus text format, other paths are 404, and SIGTERM still stops the process cleanly."""
    process, base = _start(apiless, command)
    try:
        eventually(lambda: _answers(f"{base}/health/ready"), within=30)
        assert httpx.get(f"{base}/health/live").json() == {"status": "ok"}
        assert httpx.get(f"{base}/health/ready").json() == {"status": "ready"}
        scrape = httpx.get(f"{base}/metrics")
        assert scrape.headers["content-type"].startswith("text/plain")
        assert "# TYPE qrloop_settlement_lag_seconds histogram" in scrape.text
        assert httpx.get(f"{base}/nothing").status_code == 404
        assert httpx.post(f"{base}/health/live").status_code == 405
    finally:
        assert _stop(process) == 0


def test_probe_metrics_need_the_token_when_one_is_set(apiless: Stack) -> None:
    """With QRLOOP_METRICS_TOKEN set, a worker's /metrics refuses a missing or wrong bearer
    token, as the API's does, while the health probes stay open to the orchestrator."""
    process, base = _start(apiless, "worker", QRLOOP_METRICS_TOKEN="s3cret-token")
    try:
        eventually(lambda: _answers(f"{base}/health/ready"), within=30)
        assert httpx.get(f"{base}/metrics").status_code == 401
        wrong = {"Authorization": "Bearer not-it"}
        assert httpx.get(f"{base}/metrics", headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert httpx.get(f"{base}/metrics", headers=right).status_code == 200
    finally:
        assert _stop(process) == 0
