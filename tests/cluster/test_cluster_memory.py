"""The Redis memory on a real three-master Redis Cluster, and fenced appends on both kinds of Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from agent.cluster.leases import LeaseStore
from agent.memory import FencedError, MemoryConfig, RedisConfig, RetentionConfig
from agent.memory.redis import RedisTokenMemory
from tests.memory.memory_helpers import REDIS_URL, make_tokens, ones

pytestmark = [pytest.mark.services]


def memory_config(url: str, prefix: str, *, cluster: bool) -> MemoryConfig:
    return MemoryConfig(
        backend="redis",
        retention=RetentionConfig(recent_seconds=2, bucket_seconds=4, floor_tokens_per_bucket=2),
        redis=RedisConfig(url=url, key_prefix=prefix, cluster=cluster),
    )


@pytest.fixture(params=["standalone", "cluster"])
def where(request: pytest.FixtureRequest) -> tuple[str, bool]:
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url, True
    return REDIS_URL, False


async def test_each_stream_lives_in_one_slot_and_streams_spread_over_the_masters(redis_cluster):
    prefix = f"fsatest-{uuid.uuid4().hex[:8]}"
    streams = [f"cam{i}" for i in range(6)]
    async with RedisTokenMemory(memory_config(redis_cluster.url, prefix, cluster=True)) as memory:
        for stream in streams:
            for frames in ([0, 1], [2, 3], [4, 5]):
                tokens = make_tokens(frames)
                await memory.append(stream, tokens, ones(tokens))
        read = await memory.read(streams)
        stats = await memory.stats()
        listed = await memory.streams()
        assert await memory.delete("cam0")
        after = await memory.streams()
        keys = [k.decode() async for k in memory.client.scan_iter(match=f"{prefix}:s:*", count=1000)]
    assert {s: len(read[s]) for s in streams} == {s: 24 for s in streams}
    assert stats.tokens == 6 * 24 and stats.streams["cam3"].tokens == 24
    assert listed == streams and after == streams[1:]
    slots = {
        s: {key_slot(k.encode()) for k in keys if k.startswith(f"{prefix}:s:{{{s}}}:")} for s in streams[1:]
    }
    assert all(len(v) == 1 for v in slots.values()), slots
    nodes = {redis_cluster.node_of(next(iter(v))) for v in slots.values()}
    assert len(nodes) >= 2


async def test_a_writer_whose_lease_passed_to_another_agent_cannot_append(where, redis_prefix):
    url, cluster = where
    config = memory_config(url, redis_prefix, cluster=cluster)
    async with RedisTokenMemory(config) as old, RedisTokenMemory(config) as new:
        first = LeaseStore(old.client, old.keys, "agent-a", lease_s=0.5)
        second = LeaseStore(new.client, new.keys, "agent-b", lease_s=0.5)
        token_a = await first.claim("cam")
        assert await second.claim("cam") is None  # held
        old.set_fence("cam", token_a)
        chunk = make_tokens([0, 1])
        await old.append("cam", chunk, ones(chunk))
        await asyncio.sleep(0.7)  # agent-a paused past its lease
        token_b = await second.claim("cam")
        new.set_fence("cam", token_b)
        late = make_tokens([2, 3])
        with pytest.raises(FencedError, match="leased to"):
            await old.store(await old.prepare("cam", late, ones(late)))
        assert not await first.renew("cam", token_a)
        await new.append("cam", late, ones(late))
        stats = (await new.stats("cam")).streams["cam"]
    assert token_a is not None and token_b is not None and token_b > token_a
    assert stats.tokens == 16 and stats.appended == 16


async def test_a_released_lease_is_claimed_at_once(where, redis_prefix):
    url, cluster = where
    async with RedisTokenMemory(memory_config(url, redis_prefix, cluster=cluster)) as memory:
        a = LeaseStore(memory.client, memory.keys, "agent-a", lease_s=30)
        b = LeaseStore(memory.client, memory.keys, "agent-b", lease_s=30)
        token = await a.claim("cam")
        assert token is not None and await b.claim("cam") is None
        assert await a.release("cam", token)
        taken = await b.claim("cam")
        lease = await b.read("cam")
    assert taken == token + 1
    assert lease is not None and lease.agent == "agent-b" and 29 < lease.ttl_s <= 30


@pytest.fixture
async def redis_prefix(where):
    """A unique prefix, deleted after the test from whichever Redis the test used."""
    url, cluster = where
    name = f"fsatest-{uuid.uuid4().hex[:8]}"
    yield name
    client = (aioredis.RedisCluster if cluster else aioredis.Redis).from_url(url)
    keys = [k async for k in client.scan_iter(match=f"{name}*")]
    for key in keys:
        await client.delete(key)
    await client.aclose()
