"""Fixtures for the memory tests: unique Redis prefixes, own redis-servers, memories of either backend."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.memory import MemoryConfig, RedisConfig, RetentionConfig, TokenMemory, open_memory
from tests.memory.memory_helpers import (
    REDIS_URL,
    MemoryFactory,
    RedisServer,
    drop_prefix,
    free_port,
    redis_reachable,
)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the shared Redis, removed after the test."""
    if not redis_reachable():
        pytest.skip(f"no Redis at {REDIS_URL} (set FSA_TEST_REDIS_URL)")
    prefix = f"test:mem:{uuid.uuid4().hex[:12]}"
    yield prefix
    drop_prefix(REDIS_URL, prefix)


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_memory(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MemoryFactory]:
    """Builds unconnected memories of the test's backend that share one store (Redis prefix or snapshot)."""
    prefix = request.getfixturevalue("redis_prefix") if backend == "redis" else None
    opened: list[TokenMemory] = []

    def factory(retention: RetentionConfig | None = None, **redis_overrides: object) -> TokenMemory:
        config = MemoryConfig(
            backend=backend,  # type: ignore[arg-type]
            retention=retention or RetentionConfig(),
            redis=RedisConfig(url=REDIS_URL, key_prefix=prefix or "unused", **redis_overrides),  # type: ignore[arg-type]
            snapshot_path=tmp_path / "memory.safetensors",
        )
        memory = open_memory(config)
        opened.append(memory)
        return memory

    yield factory
    for memory in opened:
        await memory.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started persistent redis-server of this test's own."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory, free_port())
    server.start()
    yield server
    server.stop(kill=True)
