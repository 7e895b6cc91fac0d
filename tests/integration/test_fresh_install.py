"""A fresh install the deploy/ way: `qrloop migrate` on a new database readies the code state,
so API processes started on their own serve at once; a later migrate never rebuilds lost state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from qrloop import keyspace
from support import Stores, own_stores

PARTITIONS = 8


def _migrate(own: Stores, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": own.database_url,
        "REDIS_URL": own.redis_url,
        "QRLOOP_PARTITIONS": str(PARTITIONS),
    }
    return subprocess.run(
        [sys.executable, "-m", "qrloop", "migrate"],
        env=env, cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _markers(client: redis.Redis) -> int:
    return sum(int(client.exists(keyspace.epoch(p))) for p in range(PARTITIONS))


def test_migrate_readies_a_new_install_and_leaves_lost_state_to_the_operator(
    stores: Stores, tmp_path: Path
) -> None:
    """On a new database, `qrloop migrate` applies every migration and gives every partition its
    epoch marker (Redis can hold nothing PostgreSQL lacks). Run again after Redis lost its
    state, it applies nothing and leaves the markers missing: the API keeps refusing codes
    until an operator rebuilds the state with `qrloop reconcile --rehydrate`."""
    with own_stores(stores) as own:
        client = redis.Redis.from_url(own.redis_url)
        assert _markers(client) == 0

        first = _migrate(own, tmp_path)
        assert first.returncode == 0, first.stderr
        assert f"code state ready on {PARTITIONS} partition(s)" in first.stdout
        assert _markers(client) == PARTITIONS

        client.flushdb()
        again = _migrate(own, tmp_path)
        assert again.returncode == 0, again.stderr
        assert "database is up to date" in again.stdout
        assert "code state" not in again.stdout
        assert _markers(client) == 0
