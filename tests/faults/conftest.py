"""Fixtures for the fault tests: stacks whose processes and servers a test may kill."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qrloop.embedded import EmbeddedServers
from support import Stack, Stores, serving

Spawn = Callable[[str], subprocess.Popen[bytes]]


@pytest.fixture
def workerless(stores: Stores, scratch_dir: Path) -> Iterator[Stack]:
    """`qrloop serve` running its API only (QRLOOP_RUN_WORKER=false, which also leaves out the
    signer): the test runs the workers itself, to pause, kill and replace them when it says."""
    with serving(stores, scratch_dir / "serve", QRLOOP_RUN_WORKER="false") as stack:
        yield stack


@pytest.fixture
def spawn(workerless: Stack) -> Iterator[Spawn]:
    """Start `qrloop <command>` processes (worker, signer) on the workerless stack's settings;
    those still running at the end are stopped before the stack is."""
    started: list[subprocess.Popen[bytes]] = []

    def start(command: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "qrloop", command],
            env=workerless.env,
            cwd=workerless.workdir,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def own_postgres(scratch_dir: Path) -> Iterator[tuple[Stack, EmbeddedServers]]:
    """A whole `qrloop serve` on an embedded PostgreSQL (and Valkey) of this test's own, which
    the test may stop and start again; never the session's servers."""
    servers = EmbeddedServers(scratch_dir / "embedded")
    urls = servers.start()
    try:
        with serving(Stores(urls.database_url, urls.redis_url), scratch_dir / "serve") as stack:
            try:
                yield stack, servers
            finally:
                servers.start_postgres()  # the stack's database is dropped at the end
    finally:
        servers.stop()
