"""Scan-to-answer latency of the till page's server-decode path: POST /v1/redeem/frame.

Starts `qrloop serve` (one API process, as `make serve` runs it) on fresh embedded stores, signs
real HMAC codes, and makes phone-camera-like JPEG frames of them: the code's QR as the signer
renders it, turned a few degrees, shrunk to what a code 20 to 30 cm from a phone covers,
blurred a little, on a noisy background, at 640x480 and 1280x720, quality 80. Then, per frame
size, a till sends frames as the page does, one in flight at a time: frames holding a fresh code
(each answered 200 `redeemed`) and frames holding none (answered `no_code`, what most frames
of a live camera are), and also four tills at once. Reports p50/p99 of the time from sending a
frame to reading the answer, and how much of the API process's CPU per frame went to decoding
it (`decode_frame` timed alone on the same frames, over the API process's CPU per frame).
Writes the "## Till frames" section of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/till_frames.py [--frames 200] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from machine import describe
from order import wait_ready
from PIL import Image, ImageFilter
from ports import free_port
from results import write_section

from qrloop.codes.render import png_bytes
from qrloop.embedded import EmbeddedServers
from qrloop.till.frames import decode_frame

SECTION = "## Till frames"
SIZES = ((640, 480), (1280, 720))
TILLS_AT_ONCE = 4


def camera_frame(text: str | None, size: tuple[int, int], seed: int) -> bytes:
    """A JPEG like a phone's preview of a code held at the till (or of the counter alone)."""
    rng = random.Random(seed)
    width, height = size
    noise = Image.effect_noise(size, 28).convert("RGB")
    frame = Image.blend(Image.new("RGB", size, (150, 140, 128)), noise, 0.35)
    if text is not None:
        code = Image.open(io.BytesIO(png_bytes(text, scale=8))).convert("RGB")
        side = int(height * rng.uniform(0.45, 0.6))
        code = code.resize((side, side), Image.Resampling.BILINEAR)
        code = code.rotate(rng.uniform(-12, 12), expand=True, fillcolor=(150, 140, 128))
        frame.paste(
            code, (rng.randint(0, width - code.width), rng.randint(0, height - code.height))
        )
    frame = frame.filter(ImageFilter.GaussianBlur(0.8))
    out = io.BytesIO()
    frame.save(out, format="JPEG", quality=80)
    return out.getvalue()


@dataclass
class Run:
    size: tuple[int, int]
    kind: str  # "code" or "no code"
    tills: int
    latencies: list[float]
    frame_bytes: float
    api_cpu_ms: float  # the API process's CPU per frame
    decode_ms: float  # decode_frame alone, per frame, in this process

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def api_process(serve: subprocess.Popen[bytes]) -> psutil.Process:
    for child in psutil.Process(serve.pid).children(recursive=True):
        if "api" in child.cmdline():
            return child
    raise SystemExit("no API process under qrloop serve")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def decode_cost(frames: list[bytes]) -> float:
    """CPU ms per frame of decode_frame alone (Pillow's JPEG decode and zxing-cpp)."""
    started = time.process_time()
    for frame in frames:
        decode_frame(frame)
    return (time.process_time() - started) * 1000 / len(frames)


async def send_frames(base_url: str, tokens: list[str], frames: list[bytes]) -> list[float]:
    """Each till sends its share of the frames one after another; every latency, in s."""
    latencies: list[float] = []

    async def till(token: str, mine: list[bytes]) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
            for frame in mine:
                started = time.perf_counter()
                response = await client.post(
                    "/v1/redeem/frame", params={"nonce": uuid.uuid4().hex}, content=frame
                )
                latencies.append(time.perf_counter() - started)
                status = response.json().get("status")
                if response.status_code != 200 or status not in ("redeemed", "no_code"):
                    raise SystemExit(f"unexpected answer {response.status_code}: {response.text}")

    await asyncio.gather(*(till(token, frames[i :: len(tokens)]) for i, token in enumerate(tokens)))
    return latencies


class Shop:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=600
        )
        self.store = self.post("/v1/stores", {"name": "Main"})["id"]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.client.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def token(self, number: int) -> str:
        terminal = self.post("/v1/terminals", {"store_id": self.store, "name": f"phone {number}"})
        exchange = {"terminal_id": terminal["id"], "secret": terminal["secret"]}
        answer = httpx.post(self.base_url + "/v1/terminal/token", json=exchange)
        token: str = answer.json()["access_token"]
        return token

    def codes(self, quantity: int) -> list[str]:
        campaign = self.post(
            "/v1/campaigns", {"name": "Bench", "face_value": 100, "currency": "CNY"}
        )
        order = self.post(f"/v1/campaigns/{campaign['id']}/orders", {"quantity": quantity})
        while self.client.get(f"/v1/orders/{order['id']}").json()["status"] != "done":
            time.sleep(0.1)
        csv = self.client.get(f"/v1/orders/{order['id']}/codes", params={"format": "csv"}).text
        return [line.split(",")[0] for line in csv.splitlines()[1:]]


def measure(env: dict[str, str], workdir: Path, per_run: int) -> list[Run]:
    base_url = f"http://127.0.0.1:{env['QRLOOP_PORT']}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "qrloop", "serve"], env=env, cwd=workdir, stdout=subprocess.DEVNULL
    )
    try:
        wait_ready(base_url, serve)
        created = subprocess.run(
            [sys.executable, "-m", "qrloop", "merchants", "create", "Bench"],
            env=env, cwd=workdir, capture_output=True, text=True, check=True,
        )  # fmt: skip
        shop = Shop(
            base_url, dict(line.split("=", 1) for line in created.stdout.split())["api_key"]
        )
        tokens = [shop.token(number) for number in range(TILLS_AT_ONCE)]
        codes = iter(shop.codes(per_run * len(SIZES) * 2))
        api = api_process(serve)
        runs = []
        for size in SIZES:
            for kind in ("code", "no code"):
                for tills in (1, TILLS_AT_ONCE):
                    texts = [next(codes) if kind == "code" else None for _ in range(per_run)]
                    if kind == "no code" and tills == TILLS_AT_ONCE:
                        texts = texts[: per_run // 2]
                    frames = [camera_frame(text, size, seed) for seed, text in enumerate(texts)]
                    print(f"{size[0]}x{size[1]} {kind}, {tills} till(s): {len(frames)} frames")
                    before = cpu_seconds(api)
                    latencies = asyncio.run(send_frames(base_url, tokens[:tills], frames))
                    api_ms = (cpu_seconds(api) - before) * 1000 / len(frames)
                    runs.append(
                        Run(
                            size, kind, tills, latencies,
                            statistics.fmean(len(frame) for frame in frames),
                            api_ms, decode_cost(frames[:50]),
                        )
                    )  # fmt: skip
        return runs
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)


def run(per_run: int) -> list[Run]:
    workdir = Path(tempfile.mkdtemp(prefix="qrloop-bench-frames-"))
    env = {
        **os.environ,
        "QRLOOP_PORT": str(free_port()),
        "QRLOOP_KEYS_DIR": str(workdir / "keys"),
        "QRLOOP_DATA_DIR": str(workdir / ".qrloop"),
        "QRLOOP_LOG_LEVEL": "warning",
    }
    try:
        with EmbeddedServers(workdir / "stores") as urls:
            env.update(DATABASE_URL=urls.database_url, REDIS_URL=urls.redis_url)
            return measure(env, workdir, per_run)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def section(runs: list[Run], command: str) -> str:
    rows = [
        f"| {r.size[0]}x{r.size[1]} | {r.kind} | {r.tills} | {len(r.latencies)}"
        f" | {r.frame_bytes / 1024:.0f} KiB | {r.quantile(0.5):.1f} | {r.quantile(0.99):.1f}"
        f" | {r.api_cpu_ms:.1f} | {r.decode_ms:.1f} | {min(1.0, r.decode_ms / r.api_cpu_ms):.0%} |"
        for r in runs
    ]
    return "\n".join(
        [
            SECTION,
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `.venv/bin/python {command}`;"
            " stores: embedded PostgreSQL and Valkey (AOF, appendfsync always); one API"
            " process; the client on the same machine.",
            "",
            *describe(),
            "",
            "Phone-camera-like JPEG frames (quality 80) of real HMAC codes (QR version 3, turned"
            " up to 12 degrees, 45-60 % of the frame's height, slightly blurred, on noise), or of"
            " the counter alone. Each till sends one frame at a time, as the page does. Latency:"
            " from sending the frame to reading the answer, in ms. CPU: the API process's per"
            " frame, and `decode_frame` (Pillow's JPEG decode, grey conversion and zxing-cpp)"
            " timed alone on the same frames; decode share = decode ÷ API CPU.",
            "",
            "| frame | holds | tills | frames | size | p50 ms | p99 ms | API CPU ms/frame"
            " | decode ms/frame | decode share |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per run (default 200)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    command = "benchmarks/till_frames.py" + (
        f" --frames {args.frames}" if args.frames != 200 else ""
    )
    text = section(run(args.frames), command)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
