"""The Redis memory under a flood of reads, and with credentials Redis refuses (issue 17, items 2 and 7)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from agent.memory import MemoryAuthError, MemoryConfig, MemoryState, RedisConfig
from agent.memory.redis import RedisTokenMemory
from tests.memory.memory_helpers import REDIS_URL, make_tokens, ones

pytestmark = pytest.mark.services


async def test_a_flood_of_concurrent_reads_waits_for_connections_instead_of_failing(redis_prefix):
    config = MemoryConfig(backend="redis", redis=RedisConfig(url=REDIS_URL, key_prefix=redis_prefix))
    async with RedisTokenMemory(config) as memory:
        await memory.append("cam", make_tokens([0, 1]), ones(make_tokens([0, 1])))
        reads = await asyncio.gather(*(memory.read(["cam"]) for _ in range(300)))
        state = memory.state
    assert [len(r["cam"]) for r in reads] == [8] * 300
    assert state is MemoryState.READY


async def test_the_pool_never_opens_more_connections_than_configured(redis_server):
    config = MemoryConfig(
        backend="redis", redis=RedisConfig(url=redis_server.url, key_prefix="fsa:pool", max_connections=4)
    )
    admin = redis.Redis.from_url(redis_server.url)
    async with RedisTokenMemory(config) as memory:
        await memory.append("cam", make_tokens([0, 1]), ones(make_tokens([0, 1])))
        reads = await asyncio.gather(*(memory.read(["cam"]) for _ in range(50)), memory.stats("cam"))
        clients = len(admin.client_list()) - 1  # the memory's connections stay open in its pool
    admin.close()
    assert all(len(r["cam"]) == 8 for r in reads[:-1])
    assert 1 <= clients <= 4


async def test_a_wrong_password_fails_at_connect_with_a_clear_error(redis_server):
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("requirepass", "right-password")
    admin.close()
    config = MemoryConfig(
        backend="redis",
        redis=RedisConfig(url=redis_server.url, key_prefix="fsa:auth", password="wrong-password"),
    )
    memory = RedisTokenMemory(config)
    started = time.monotonic()
    with pytest.raises(MemoryAuthError, match="refused the credentials"):
        await memory.connect()
    assert time.monotonic() - started < 5
    assert memory.state is MemoryState.CLOSED
