"""Fixtures of the cluster tests: a real three-master Redis Cluster for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import model_dir, recording, redis_prefix  # noqa: F401
from tests.cluster.redis_cluster import RedisCluster
from tests.mqtt.conftest import prefix  # noqa: F401


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Three masters on free ports, torn down at the end of the session."""
    cluster = RedisCluster(Path(tmp_path_factory.mktemp("redis-cluster")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
