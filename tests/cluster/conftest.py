"""A `qrloop serve` on the session's Valkey Cluster, for the tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cluster_support import Cluster
from support import Stack, Stores, fresh_database, serving_on


@pytest.fixture(scope="module")
def cluster_stack(
    valkey_cluster: Cluster, stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """`qrloop serve` (API, worker, signer) on a fresh database and the emptied cluster, its
    REDIS_URL naming one replica: any node of a cluster will do."""
    valkey_cluster.flush()
    replica = valkey_cluster.node(next(iter(valkey_cluster.replicas_of.values()))[0])
    with (
        fresh_database(stores.database_url) as database_url,
        serving_on(Stores(database_url, replica.url), tmp_path_factory.mktemp("serve")) as stack,
    ):
        yield stack
