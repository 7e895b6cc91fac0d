"""`qrloop serve` on the embedded default as a newcomer runs it: start, use, kill -9, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

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
            [sys.executable, "-m", "qrloop", "merchants", "create", "Second terminal"],
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
