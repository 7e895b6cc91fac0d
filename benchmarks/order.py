"""A 1,000,000-code order from request to a complete CSV download, through a real qrloop.

Starts `qrloop serve` on fresh embedded stores (or DATABASE_URL / REDIS_URL), orders the codes
through the API, waits for the signer, downloads the CSV, and reports codes/s for the whole
path and the peak memory of qrloop's processes (API, worker, signer and its pool), sampled
every 100 ms. Writes the "## Bulk order" section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/order.py [--quantity 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from machine import describe
from ports import free_port
from results import write_section

from qrloop.embedded import EmbeddedServers

SECTION = "## Bulk order"


class PeakMemory(threading.Thread):
    """Largest summed RSS of a process and all its descendants, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            total = 0
            for process in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)


def wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("qrloop serve exited early")
        try:
            if httpx.get(base_url + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("qrloop serve did not become ready")


def measure(env: dict[str, str], workdir: Path, quantity: int) -> dict[str, float]:
    base_url = f"http://127.0.0.1:{env['QRLOOP_PORT']}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "qrloop", "serve"], env=env, cwd=workdir, stdout=subprocess.DEVNULL
    )
    memory = PeakMemory(serve.pid)
    try:
        wait_ready(base_url, serve)
        signer = next(
            child for child in psutil.Process(serve.pid).children()
            if "signer" in " ".join(child.cmdline())
        )  # fmt: skip
        signer_memory = PeakMemory(signer.pid)
        signer_memory.start()
        created = subprocess.run(
            [sys.executable, "-m", "qrloop", "merchants", "create", "Bench",
             "--owner-email", f"bench-{uuid.uuid4().hex[:12]}@example.com"],
            env=env, cwd=workdir, capture_output=True, text=True, check=True,
        )  # fmt: skip
        api_key = dict(line.split("=", 1) for line in created.stdout.split())["api_key"]
        client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=600
        )
        campaign = client.post(
            "/v1/campaigns", json={"name": "Bench", "face_value": 100, "currency": "CNY"}
        ).json()["id"]
        memory.start()
        started = time.monotonic()
        order = client.post(f"/v1/campaigns/{campaign}/orders", json={"quantity": quantity}).json()
        while (status := client.get(f"/v1/orders/{order['id']}").json())["status"] != "done":
            if status["status"] in ("failed", "cancelled"):
                raise SystemExit(f"order ended {status['status']}")
            time.sleep(0.05)
        signed = time.monotonic()
        lines = 0
        with client.stream("GET", f"/v1/orders/{order['id']}/codes", params={"format": "csv"}) as r:
            for chunk in r.iter_bytes():
                lines += chunk.count(b"\n")
        finished = time.monotonic()
    finally:
        memory.done.set()
        if "signer_memory" in locals():
            signer_memory.done.set()
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    if lines != quantity + 1:
        raise SystemExit(f"the CSV had {lines - 1} codes, not {quantity}")
    return {
        "sign_seconds": signed - started,
        "download_seconds": finished - signed,
        "total_seconds": finished - started,
        "peak_mib": memory.peak / 2**20,
        "signer_peak_mib": signer_memory.peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantity", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="qrloop-bench-order-"))
    env = {
        **os.environ,
        "QRLOOP_PORT": str(free_port()),
        "QRLOOP_KEYS_DIR": str(workdir / "keys"),
        "QRLOOP_DATA_DIR": str(workdir / ".qrloop"),
        "QRLOOP_LOG_LEVEL": "warning",
    }
    try:
        if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
            stores = "DATABASE_URL / REDIS_URL"
            result = measure(env, workdir, args.quantity)
        else:
            stores = "embedded PostgreSQL and Valkey (AOF, appendfsync always)"
            with EmbeddedServers(workdir / "stores") as urls:
                env.update(DATABASE_URL=urls.database_url, REDIS_URL=urls.redis_url)
                result = measure(env, workdir, args.quantity)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rate = args.quantity / result["total_seconds"]
    section = "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python benchmarks/order.py"
            f" --quantity {args.quantity}`; stores: {stores}; signer with"
            f" {os.environ.get('QRLOOP_SIGNER_PROCESSES', '2')} processes.",
            "",
            *describe(),
            "",
            "| codes | signed in | CSV downloaded in | request to complete download | codes/s"
            " | peak memory: signer and its pool | peak memory: every qrloop process |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {args.quantity:,} | {result['sign_seconds']:.1f} s"
            f" | {result['download_seconds']:.1f} s | {result['total_seconds']:.1f} s"
            f" | {rate:,.0f} | {result['signer_peak_mib']:.0f} MiB"
            f" | {result['peak_mib']:.0f} MiB |",
            "",
            f"Targets: ≥ 200,000 codes/s: {'met' if rate >= 200_000 else 'MISSED'}; peak memory of"
            f" the signing path ≤ 300 MB:"
            f" {'met' if result['signer_peak_mib'] * 2**20 <= 300e6 else 'MISSED'}.",
            "",
        ]
    )
    print(section)
    if not args.no_write:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
