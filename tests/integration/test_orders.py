"""Bulk orders: signed in the background with progress, resumable, cancellable, exported."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import zxingcpp
from PIL import Image

from qrloop.codes.format import Signer, Verifier
from qrloop.codes.keyring import KeyRing
from support import Merchant, Stack, Stores, eventually, fetchval, reason, redeem, serving


@pytest.fixture(scope="module")
def signerless(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack without its own signer and worker: each test runs the signers it needs."""
    workdir = tmp_path_factory.mktemp("signerless")
    settings = {"QRLOOP_RUN_WORKER": "false", "QRLOOP_SIGNER_STALE_SECONDS": "2"}
    with serving(stores, workdir, **settings) as stack:
        yield stack


def _signer(stack: Stack, log: Path | None = None, **settings: str) -> subprocess.Popen[bytes]:
    """A `qrloop signer` process, logging at info level into `log` when given; `settings` are
    environment variables of its own."""
    env = {**stack.env, "QRLOOP_LOG_LEVEL": "info", **settings}
    output = log.open("wb") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "qrloop", "signer"], env=env, cwd=stack.workdir, stderr=output
    )


def _signed_by_a_signer(
    stack: Stack, merchant: Merchant, path: str, within: float, **settings: str
) -> None:
    """Run a signer (with these settings) until the order at `path` is done, then stop it."""
    signer = _signer(stack, **settings)
    try:
        eventually(lambda: merchant.get(path).json()["status"] == "done", within=within)
    finally:
        signer.send_signal(signal.SIGTERM)
        signer.wait(timeout=30)


def _pool_processes(stack: Stack) -> list[psutil.Process]:
    """Live signing pool processes (fork server and workers) started from this stack."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        alive = process.info["status"] != psutil.STATUS_ZOMBIE
        if alive and "forkserver" in cmdline and str(stack.workdir) in cmdline:
            found.append(process)
    return found


def _digest_headers_match(export: httpx.Response) -> None:
    """The export carries its length and its SHA-256 (ETag, Repr-Digest, Digest), and they are
    the body's."""
    digest = hashlib.sha256(export.content).digest()
    assert int(export.headers["content-length"]) == len(export.content)
    assert export.headers["etag"] == f'"{digest.hex()}"'
    assert export.headers["repr-digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert export.headers["digest"] == f"sha-256={base64.b64encode(digest).decode()}"


def _serials(stack: Stack, csv_text: str) -> list[int]:
    verifier = Verifier(KeyRing.load(Path(stack.env["QRLOOP_KEYS_DIR"]) / "keyring.json"))
    return [verifier.verify(line.split(",")[0]).serial for line in csv_text.splitlines()[1:]]


def test_order_answers_at_once_and_shows_progress(stack: Stack) -> None:
    """POST answers 202 queued at once; progress rises to done; the CSV holds each serial once,
    and its ETag and digests are the SHA-256 the signer recorded of exactly those bytes."""
    merchant = stack.new_merchant()
    campaign = merchant.campaign()
    order = merchant.created(f"/v1/campaigns/{campaign}/orders", {"quantity": 120_000})
    assert order["status"] == "queued"
    assert (order["done"], order["quantity"]) == (0, 120_000)
    seen: set[int] = set()

    def finished() -> bool:
        progress = merchant.get(f"/v1/orders/{order['id']}").json()
        seen.add(progress["done"])
        return progress["status"] == "done"

    eventually(finished, within=60)
    assert max(seen) == 120_000
    export = merchant.get(f"/v1/orders/{order['id']}/codes", format="csv")
    serials = _serials(stack, export.text)
    assert serials == list(range(order["first_serial"], order["first_serial"] + 120_000))
    _digest_headers_match(export)


def test_export_waits_for_the_signer(signerless: Stack) -> None:
    """Until an order is signed, its export is a 409 conflict naming the order's status."""
    merchant = signerless.new_merchant()
    campaign = merchant.campaign()
    order = merchant.created(f"/v1/campaigns/{campaign}/orders", {"quantity": 10})
    response = merchant.get(f"/v1/orders/{order['id']}/codes")
    assert (response.status_code, reason(response)) == (409, "conflict")
    assert response.json()["order_status"] == "queued"


def test_killed_signer_resumes_without_duplicates_or_gaps(signerless: Stack) -> None:
    """kill -9 of the signer mid-order leaves no pool process behind; another signer takes
    the order over (after the stale interval) and the export holds each serial exactly once,
    with the SHA-256 of the whole CSV recorded although no signer derived all of it in one go."""
    merchant = signerless.new_merchant()
    campaign = merchant.campaign()
    order = merchant.created(f"/v1/campaigns/{campaign}/orders", {"quantity": 400_000})
    path = f"/v1/orders/{order['id']}"
    first = _signer(signerless)
    try:
        eventually(lambda: merchant.get(path).json()["done"] >= 50_000, within=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    eventually(lambda: not _pool_processes(signerless), within=10)
    interrupted = merchant.get(path).json()
    assert interrupted["status"] == "running"
    assert interrupted["done"] < 400_000
    _signed_by_a_signer(signerless, merchant, path, within=120)
    export = merchant.get(path + "/codes", format="csv")
    serials = _serials(signerless, export.text)
    assert serials == list(range(order["first_serial"], order["first_serial"] + 400_000))
    _digest_headers_match(export)


def test_claim_links_keep_the_url_the_order_was_placed_under(signerless: Stack) -> None:
    """A signer on a host whose QRLOOP_PUBLIC_URL differs from the API's signs the bytes the API
    serves: the order carries the claim links' base it was placed under, so the digest the
    signer recorded is the export's, and every link starts with the API's public URL."""
    merchant = signerless.new_merchant()
    campaign = merchant.campaign()
    order = merchant.created(f"/v1/campaigns/{campaign}/orders", {"quantity": 1_000})
    path = f"/v1/orders/{order['id']}"
    _signed_by_a_signer(
        signerless, merchant, path, within=60, QRLOOP_PUBLIC_URL="https://elsewhere.example"
    )
    export = merchant.get(path + "/codes", format="csv")
    _digest_headers_match(export)
    links = [line.split(",")[2] for line in export.text.splitlines()[1:]]
    assert all(link.startswith(signerless.base_url + "/c/") for link in links)


def test_cancel_stops_the_signer_and_voids_the_range(signerless: Stack, tmp_path: Path) -> None:
    """Cancelling a running order makes its signer stop at the next block, short of the
    total, voids every code of the range, and leaves nothing to export."""
    merchant = signerless.new_merchant()
    store = merchant.created("/v1/stores", {"name": "S"})["id"]
    token = merchant.terminal_token(store)
    campaign = merchant.campaign()
    order = merchant.created(f"/v1/campaigns/{campaign}/orders", {"quantity": 2_000_000})
    path = f"/v1/orders/{order['id']}"
    log = tmp_path / "signer.log"
    signer = _signer(signerless, log)
    try:
        eventually(lambda: merchant.get(path).json()["done"] > 0, within=60)
        cancelled = merchant.post(path + "/cancel", {})
        assert cancelled.json()["status"] == "cancelled"
        stopped = f"order {order['id']}: no longer ours"
        eventually(lambda: stopped in log.read_text(), within=30)
    finally:
        signer.send_signal(signal.SIGTERM)
        signer.wait(timeout=30)
    final = merchant.get(path).json()
    assert final["status"] == "cancelled"
    assert final["done"] < 2_000_000
    assert merchant.get(path + "/codes").status_code == 409
    assert merchant.post(path + "/cancel", {}).status_code == 409

    # A code of the cancelled range, made with the order's key, is refused as voided.
    keyring = KeyRing.load(Path(signerless.env["QRLOOP_KEYS_DIR"]) / "keyring.json")
    key_id = fetchval(signerless, "SELECT key_id FROM orders WHERE id = $1", order["id"])
    key = keyring.get(key_id)
    assert key is not None
    code = Signer(key).sign(campaign, order["first_serial"] + 5)
    response = redeem(signerless, token, code)
    assert (response.status_code, reason(response)) == (409, "voided")
    assert merchant.get(f"/v1/campaigns/{campaign}/stats").json()["voided"] == 2_000_000


def _watched(stack: Stack, order_id: int) -> tuple[str, str]:
    """`qrloop orders watch ID` to the end: its last bar and the line after it."""
    result = stack.cli("orders", "watch", str(order_id))
    assert result.returncode == 0
    *_, final, took = re.split(r"[\r\n]+", result.stdout.strip())
    return final, took


def test_watch_shows_a_progress_bar_until_done(stack: Stack) -> None:
    """`qrloop orders watch ID` draws a bar and exits 0 when the order is done."""
    merchant = stack.new_merchant()
    campaign = merchant.campaign()
    order = merchant.created(f"/v1/campaigns/{campaign}/orders", {"quantity": 60_000})
    final, took = _watched(stack, order["id"])
    assert "100%" in final
    assert "60,000/60,000" in final
    assert final.endswith("  done")
    assert took.startswith("60,000 codes in ")


def test_watch_tells_the_orders_own_rate(stack: Stack) -> None:
    """Watching an order that is already done (it finished before the first poll, which once
    showed "0 codes/s") ends with how long it took from being placed to done, as PostgreSQL
    stamped it, and the codes per second that makes."""
    merchant = stack.new_merchant()
    order = merchant.order(merchant.campaign(), 2_000)
    final, took = _watched(stack, order["id"])
    assert "codes/s" not in final
    shown = re.fullmatch(r"2,000 codes in ([\d.]+) (ms|s) \(([\d,]+) codes/s\)", took)
    assert shown is not None, took
    seconds = fetchval(
        stack,
        "SELECT extract(epoch FROM finished_at - created_at)::float8 FROM orders WHERE id = $1",
        order["id"],
    )
    duration = float(shown[1]) / (1000 if shown[2] == "ms" else 1)
    assert abs(duration - seconds) <= (0.0005 if shown[2] == "ms" else 0.05)
    rate = int(shown[3].replace(",", ""))
    assert rate > 0
    assert abs(rate - 2_000 / seconds) <= 0.5


def test_picture_exports_scan(stack: Stack) -> None:
    """png and svg exports are ZIPs of images named by serial; every PNG scans to its code;
    the pdf export is a PDF whose first page holds the codes' QR symbols."""
    merchant = stack.new_merchant()
    campaign = merchant.campaign(name="Sheet test")
    order = merchant.order(campaign, 30)
    path = f"/v1/orders/{order['id']}/codes"
    codes = [line.split(",")[0] for line in merchant.get(path).text.splitlines()[1:]]
    first = order["first_serial"]

    pngs = zipfile.ZipFile(io.BytesIO(merchant.get(path, format="png").content))
    assert pngs.namelist() == [f"{first + i:012d}.png" for i in range(30)]
    for i, name in enumerate(pngs.namelist()):
        found = zxingcpp.read_barcodes(Image.open(io.BytesIO(pngs.read(name))))
        assert [result.text for result in found] == [codes[i]]

    svgs = zipfile.ZipFile(io.BytesIO(merchant.get(path, format="svg").content))
    assert len(svgs.namelist()) == 30
    assert svgs.read(svgs.namelist()[0]).lstrip().startswith(b"<")

    pdf = merchant.get(path, format="pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
