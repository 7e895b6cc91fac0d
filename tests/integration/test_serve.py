"""`qrloop serve` on the embedded default as a newcomer runs it: start, use, kill -9, restart."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from qrloop import liveness
from qrloop.cli.supervisor import answers_as_ours
from qrloop.settings import load
from support import (
    Stores,
    eventually,
    fetchval,
    free_port,
    redeem,
    serving,
    wait_until_ready,
)


def _embedded_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "QRLOOP_PORT": str(port), "QRLOOP_LOG_LEVEL": "warning"}


def _servers_for(folder: Path) -> list[psutil.Process]:
    """postgres and valkey processes whose command line names this folder."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        # This machine's pid 1 reaps nothing: a stopped server may linger as a zombie.
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(folder) in cmdline and ("postgres" in cmdline or "valkey" in cmdline):
            found.append(process)
    return found


def _no_servers_left(folder: Path, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while _servers_for(folder):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _refused(base_url: str, timeout: float = 15) -> bool:
    """Poll until nothing answers at base_url."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(base_url + "/health/live", timeout=1)
        except httpx.TransportError:
            return True
        time.sleep(0.1)
    return False


def test_serve_survives_kill_9_and_the_cli_finds_the_running_servers(scratch_dir: Path) -> None:
    """The CLI attaches to a running embedded serve; after kill -9 the next serve starts cleanly."""
    port = free_port()
    env = _embedded_env(port)
    base_url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "qrloop", "serve"]

    first = subprocess.Popen(serve, cwd=scratch_dir, env=env)
    try:
        wait_until_ready(base_url, first)
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "qrloop",
                "merchants",
                "create",
                "Second terminal",
                "--owner-email",
                "owner@serve.example.com",
            ],
            cwd=scratch_dir,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        api_key = dict(line.split("=", 1) for line in created.stdout.split())["api_key"]
        headers = {"Authorization": f"Bearer {api_key}"}
        store = httpx.post(f"{base_url}/v1/stores", json={"name": "A"}, headers=headers)
        assert store.status_code == 201, store.text
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert _refused(base_url), "the killed serve's API processes should stop with it"

    second = subprocess.Popen(serve, cwd=scratch_dir, env=env)
    try:
        wait_until_ready(base_url, second)
        state = json.loads((scratch_dir / ".qrloop" / "embedded.json").read_text())
        assert state["owner_pid"] == second.pid
        again = httpx.post(f"{base_url}/v1/stores", json={"name": "B"}, headers=headers)
        assert again.status_code == 201, again.text
        assert again.json()["id"] == store.json()["id"] + 1
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
    assert _no_servers_left(scratch_dir)


def _qrloop(folder: Path, command: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`qrloop COMMAND` on the embedded default in `folder`, with extra settings."""
    return subprocess.run(
        [sys.executable, "-m", "qrloop", command],
        cwd=folder,
        env={**_embedded_env(0), **settings},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_setting_stops_with_a_message_naming_it(scratch_dir: Path) -> None:
    """A malformed QRLOOP_PORT stops qrloop with exit 2 and a message that names the variable."""
    result = _qrloop(scratch_dir, "serve", QRLOOP_PORT="eighty")
    assert result.returncode == 2
    assert "QRLOOP_PORT" in result.stderr
    assert not (scratch_dir / ".qrloop").exists()


@pytest.mark.parametrize("value", ["0", "1025"])
def test_partitions_out_of_range_is_refused(scratch_dir: Path, value: str) -> None:
    """QRLOOP_PARTITIONS outside 1..1024 is refused at start, naming the variable."""
    result = _qrloop(scratch_dir, "migrate", QRLOOP_PARTITIONS=value)
    assert result.returncode == 2
    assert "QRLOOP_PARTITIONS" in result.stderr


def test_only_one_store_url_is_refused(scratch_dir: Path) -> None:
    """DATABASE_URL without REDIS_URL is refused at start (exit 2), naming both variables."""
    result = _qrloop(scratch_dir, "migrate", DATABASE_URL="postgresql://nobody@/nothing")
    assert result.returncode == 2
    assert "DATABASE_URL and REDIS_URL" in result.stderr
    assert not (scratch_dir / ".qrloop").exists()


def _role_pids(workdir: Path, role: str) -> set[int]:
    """Live `qrloop <role>` processes started from `workdir`."""
    found = set()
    for process in psutil.process_iter(["cmdline", "status", "cwd"]):
        cmdline = process.info["cmdline"] or []
        if (
            cmdline[-3:] == ["-m", "qrloop", role]
            and process.info["status"] != psutil.STATUS_ZOMBIE
            and process.info["cwd"] == str(workdir)
        ):
            found.add(process.pid)
    return found


def test_a_killed_worker_is_restarted_while_the_tills_keep_answering(
    stores: Stores, tmp_path: Path
) -> None:
    """kill -9 of the settlement worker leaves the API answering; serve starts a new worker,
    which settles what was redeemed meanwhile."""
    with serving(stores, tmp_path / "serve") as stack:
        merchant = stack.new_merchant()
        token = merchant.terminal_token(merchant.created("/v1/stores", {"name": "S"})["id"])
        codes = merchant.codes(merchant.campaign(), 2)
        (worker,) = _role_pids(stack.workdir, "worker")
        os.kill(worker, signal.SIGKILL)
        assert redeem(stack, token, codes[0]).status_code == 200
        eventually(lambda: len(_role_pids(stack.workdir, "worker") - {worker}) == 1, within=15)
        assert redeem(stack, token, codes[1]).status_code == 200
        eventually(lambda: fetchval(stack, "SELECT count(*) FROM redemptions") == 2, within=15)


def test_a_port_taken_before_start_stops_serve_with_a_message(scratch_dir: Path) -> None:
    """With another process listening on QRLOOP_PORT, serve exits non-zero with "in use; set
    QRLOOP_PORT", starts nothing (no embedded servers, no restart loop of API processes), and
    never says it is serving."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        result = _qrloop(scratch_dir, "serve", QRLOOP_PORT=str(port))
    assert result.returncode != 0
    assert f"127.0.0.1:{port} is in use; set QRLOOP_PORT" in result.stderr
    assert "serving at" not in result.stdout
    assert "restarting" not in result.stderr
    assert not (scratch_dir / ".qrloop").exists()


def _bind_refused(host: str, port: int) -> bool:
    """Whether another listener trying to take host:port (SO_REUSEADDR, as servers do) is
    refused."""
    with socket.socket() as intruder:
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            intruder.bind((host, port))
            intruder.listen()
        except OSError as error:
            return error.errno == errno.EADDRINUSE
        return False


def test_the_port_is_held_from_the_start_and_the_banner_comes_from_its_own_api(
    scratch_dir: Path,
) -> None:
    """serve binds its port before it starts anything (the embedded servers take seconds): a
    listener trying to take the port meanwhile, on the same or the wildcard address, is refused,
    so the port can no longer be freed and retaken while serve starts. "serving at" comes once
    serve's own API process answers: its /health/live carries this start's nonce."""
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "qrloop", "serve"],
        cwd=scratch_dir,
        env=_embedded_env(port),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        assert serve.stdout.readline().startswith("starting embedded PostgreSQL")
        assert _bind_refused("127.0.0.1", port)
        assert _bind_refused("0.0.0.0", port)
        lines = iter(serve.stdout.readline, "")
        assert any(line.startswith("qrloop is serving at") for line in lines)
        live = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5)
        assert live.status_code == 200
        assert len(live.headers[liveness.START_NONCE_HEADER]) == 32
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0


@contextmanager
def _answering(nonce: str | None) -> Iterator[int]:
    """An HTTP server that answers GET /health/live 200, with `nonce` in the start-nonce header
    when given; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            if nonce is not None:
                self.send_header(liveness.START_NONCE_HEADER, nonce)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_serve_counts_only_its_own_api_as_answering() -> None:
    """The banner's check: another server answering 200 on the address (with no nonce, or
    another start's) is not serve's API; only the answer echoing this start's nonce is."""
    nonce = liveness.new_nonce()
    for answered, expected in ((None, False), (liveness.new_nonce(), False), (nonce, True)):
        with _answering(answered) as port:
            settings = load({"QRLOOP_PORT": str(port)})
            assert answers_as_ours(settings, nonce) is expected
