"""Till latency while a merchant voids 10,000 Ed25519 codes and exports 100,000 as JSON lines.

Starts `qrloop serve` (one API process, as `make serve` runs it) on fresh embedded stores,
then drives a steady till load (paced `/v1/check` and `/v1/redeem` of fresh codes from a few
terminals) three times: alone, with the merchant's large void and large export running in the
same API process, and alone again. Reports till p50/p99 per phase and the ratio of the loaded
p99 to the p99 alone (both alone phases together), so the machine's speed cancels out.
Writes the "## Till under merchant load" section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/merchant_load.py [--before REV] [--no-write]

`--before REV` also measures the qrloop of git revision REV (its `src/` archived into a
temporary folder and put first on PYTHONPATH), so the section shows before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from machine import describe
from order import wait_ready
from ports import free_port
from results import write_section

from qrloop.embedded import EmbeddedServers

HERE = Path(__file__).resolve().parent
SECTION = "## Till under merchant load"
TERMINALS = 4
RATE_PER_TERMINAL = 5  # requests/s: a steady till load of 20 requests/s in all
ALONE_SECONDS = 15.0
VOID_CODES = 10_000
EXPORT_CODES = 100_000
EXPORT_FORMAT = "json"  # derived again from (campaign, serial, key): 100,000 Ed25519 signatures
TILL_CODES = 30_000  # over ten minutes of the till load: more than the three phases take


@dataclass
class Phase:
    name: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"check": [], "redeem": []})
    failures: int = 0

    def quantile(self, route: str, q: float) -> float:
        """In ms; q = 1 is the maximum."""
        values = sorted(self.latencies[route])
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def summary(self, route: str) -> str:
        """p50 / p99 / max, in ms."""
        return " / ".join(f"{self.quantile(route, q):.0f}" for q in (0.5, 0.99, 1))


class Till:
    """An open-loop till load: requests go out on a fixed schedule, whether or not earlier
    ones were answered, so a stalled server is seen by every request that arrives meanwhile
    (a closed loop would send nothing during a stall and hide it)."""

    def __init__(self, base_url: str, tokens: list[str], codes: list[str]) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.codes = iter(codes)

    async def load(self, phase: Phase, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=256)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=120) as client:
            interval = 1 / (TERMINALS * RATE_PER_TERMINAL)
            due = time.monotonic()
            requests = []
            for sent in itertools.count():
                if stop.is_set():
                    break
                token = self.tokens[sent % TERMINALS]
                route = "check" if (sent // TERMINALS) % 2 == 0 else "redeem"
                requests.append(asyncio.create_task(self._send(client, token, route, phase)))
                due += interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await asyncio.gather(*requests)

    async def _send(self, client: httpx.AsyncClient, token: str, route: str, phase: Phase) -> None:
        body = {"code": next(self.codes)}
        if route == "redeem":
            body["nonce"] = os.urandom(8).hex()
        headers = {"Authorization": f"Bearer {token}"}
        started = time.monotonic()
        try:
            response = await client.post(f"/v1/{route}", json=body, headers=headers)
        except httpx.TransportError:
            phase.failures += 1  # the connection failed: what the till sees is an error
            return
        phase.latencies[route].append(time.monotonic() - started)
        if response.status_code != 200:
            phase.failures += 1


@dataclass
class Merchant:
    client: httpx.Client

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.client.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def codes(self, algorithm: str, quantity: int) -> tuple[int, list[str]]:
        """A new campaign's order of `quantity` codes, once signed: its id and its codes."""
        campaign = self.post(
            "/v1/campaigns",
            {"name": "Bench", "face_value": 100, "currency": "CNY", "algorithm": algorithm},
        )["id"]
        order = self.post(f"/v1/campaigns/{campaign}/orders", {"quantity": quantity})
        while (status := self.client.get(f"/v1/orders/{order['id']}").json())["status"] != "done":
            if status["status"] in ("failed", "cancelled"):
                raise SystemExit(f"order ended {status['status']}")
            time.sleep(0.1)
        csv = self.client.get(f"/v1/orders/{order['id']}/codes", params={"format": "csv"}).text
        return order["id"], [line.split(",")[0] for line in csv.splitlines()[1:]]


async def merchant_work(base_url: str, api_key: str, void: list[str], export_order: int) -> str:
    """The large void and the large export at once, each sent by curl (so receiving them
    takes no CPU from the till load's event loop); how each went and how long it took."""
    auth = f"Authorization: Bearer {api_key}"
    with tempfile.NamedTemporaryFile("w", suffix=".json") as body:
        json.dump({"codes": void}, body)
        body.flush()
        void_call = ["-H", "Content-Type: application/json", "--data-binary", f"@{body.name}"]
        voided, exported = await asyncio.gather(
            _curl(auth, f"{base_url}/v1/codes/void", *void_call),
            _curl(auth, f"{base_url}/v1/orders/{export_order}/codes?format={EXPORT_FORMAT}"),
        )
    void_ok = voided[1] == 200 and json.loads(voided[2]) == {"voided": len(void)}
    export_ok = exported[1] == 200 and exported[2].count(b"\n") == EXPORT_CODES
    return (
        f"void {'done' if void_ok else voided[1]} in {voided[0]:.1f} s,"
        f" export {'done' if export_ok else exported[1]} in {exported[0]:.1f} s"
    )


async def _curl(auth: str, url: str, *options: str) -> tuple[float, int, bytes]:
    """Seconds until curl had the whole answer, its status and its body."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-H", auth, *options, "-w", "\n%{http_code}", url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, _ = await process.communicate()
    answer, _, status = output.rpartition(b"\n")
    return time.monotonic() - started, int(status or 0), answer


async def phases(
    till: Till, base_url: str, api_key: str, void: list[str], export_order: int
) -> tuple[list[Phase], str]:
    async def alone(name: str) -> Phase:
        phase, stop = Phase(name), asyncio.Event()
        load = asyncio.create_task(till.load(phase, stop))
        await asyncio.sleep(ALONE_SECONDS)
        stop.set()
        await load
        return phase

    first = await alone("alone (before)")
    loaded, stop = Phase("during void + export"), asyncio.Event()
    load = asyncio.create_task(till.load(loaded, stop))
    await asyncio.sleep(1)
    work = await merchant_work(base_url, api_key, void, export_order)
    stop.set()
    await load
    second = await alone("alone (after)")
    return [first, loaded, second], work


def measure(env: dict[str, str], workdir: Path) -> tuple[list[Phase], str]:
    base_url = f"http://127.0.0.1:{env['QRLOOP_PORT']}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "qrloop", "serve"], env=env, cwd=workdir, stdout=subprocess.DEVNULL
    )
    try:
        wait_ready(base_url, serve)
        created = subprocess.run(
            [sys.executable, "-m", "qrloop", "merchants", "create", "Bench",
             "--owner-email", f"bench-{uuid.uuid4().hex[:12]}@example.com"],
            env=env, cwd=workdir, capture_output=True, text=True, check=True,
        )  # fmt: skip
        api_key = dict(line.split("=", 1) for line in created.stdout.split())["api_key"]
        client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=600
        )
        merchant = Merchant(client)
        store = merchant.post("/v1/stores", {"name": "Main"})["id"]
        tokens = []
        for number in range(TERMINALS):
            terminal = merchant.post("/v1/terminals", {"store_id": store, "name": f"till {number}"})
            exchange = {"terminal_id": terminal["id"], "secret": terminal["secret"]}
            tokens.append(
                httpx.post(base_url + "/v1/terminal/token", json=exchange).json()["access_token"]
            )
        _, till_codes = merchant.codes("hmac-sha256", TILL_CODES)
        _, void = merchant.codes("ed25519", VOID_CODES)
        export_order, _ = merchant.codes("ed25519", EXPORT_CODES)
        till = Till(base_url, tokens, till_codes)
        return asyncio.run(phases(till, base_url, api_key, void, export_order))
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)


def run(pythonpath: str | None) -> tuple[list[Phase], str]:
    workdir = Path(tempfile.mkdtemp(prefix="qrloop-bench-merchant-"))
    env = {
        **os.environ,
        "QRLOOP_PORT": str(free_port()),
        "QRLOOP_KEYS_DIR": str(workdir / "keys"),
        "QRLOOP_DATA_DIR": str(workdir / ".qrloop"),
        "QRLOOP_LOG_LEVEL": "warning",
    }
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    try:
        with EmbeddedServers(workdir / "stores") as urls:
            env.update(DATABASE_URL=urls.database_url, REDIS_URL=urls.redis_url)
            return measure(env, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def rows(label: str, result: tuple[list[Phase], str]) -> list[str]:
    measured, work = result
    alone = Phase("alone")
    for phase in (measured[0], measured[2]):
        for route in alone.latencies:
            alone.latencies[route] += phase.latencies[route]
    loaded = measured[1]
    lines = []
    for phase in measured:
        count = sum(len(values) for values in phase.latencies.values())
        lines.append(
            f"| {label} | {phase.name} | {count:,} | {phase.failures}"
            f" | {phase.summary('check')} | {phase.summary('redeem')} | |"
        )
    ratios = [
        loaded.quantile(route, 0.99) / alone.quantile(route, 0.99) for route in ("check", "redeem")
    ]
    lines.append(
        f"| {label} | **p99 during ÷ p99 alone** | | | **{ratios[0]:.1f}x** | **{ratios[1]:.1f}x**"
        f" | {work} |"
    )
    return lines


def snapshot(revision: str, into: Path) -> str:
    """`revision`'s src/ in `into`; the PYTHONPATH that makes Python import it."""
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", revision, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return str(into / "src")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV", help="also measure this git revision")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    head = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    table = []
    if args.before:
        with tempfile.TemporaryDirectory(prefix="qrloop-before-") as folder:
            table += rows(f"before ({args.before})", run(snapshot(args.before, Path(folder))))
    table += rows(f"this change ({head})", run(None))
    command = "benchmarks/merchant_load.py" + (f" --before {args.before}" if args.before else "")
    section = "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python {command}`;"
            " stores: embedded PostgreSQL and Valkey (AOF, appendfsync always); one API process.",
            "",
            *describe(),
            "",
            f"{TERMINALS} terminals each send {RATE_PER_TERMINAL} requests/s, alternating"
            " `POST /v1/check` and `POST /v1/redeem` of fresh HMAC codes (a steady till load)."
            f" Alone: {ALONE_SECONDS:.0f} s before and {ALONE_SECONDS:.0f} s after. During: from"
            f" one second before until the end of a `POST /v1/codes/void` of {VOID_CODES:,}"
            f" distinct Ed25519 codes and a `GET /v1/orders/{{id}}/codes?format={EXPORT_FORMAT}`"
            f" of {EXPORT_CODES:,} Ed25519 codes, sent at once to the same API process. Latency"
            " in ms from sending to the answer; requests go out on a fixed schedule whether or"
            " not earlier ones were answered (open loop), so every request that arrives during a"
            " stall sees it. The ratio divides the p99 during by the p99 of both alone phases"
            " together. The machine is shared: other work on it shows in every phase alike.",
            "",
            "| qrloop | phase | requests | not 200 or no answer | check p50 / p99 / max"
            " | redeem p50 / p99 / max | merchant requests |",
            "|---|---|---:|---:|---:|---:|---|",
            *table,
            "",
        ]
    )
    print(section)
    if not args.no_write:
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
