"""Evidence pictures on a real three-master Redis Cluster: one slot per stream, streams over the masters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from agent.memory import MemoryConfig, RedisConfig
from agent.memory.config import PicturesConfig
from agent.memory.thumbnails import RedisPictures, open_pictures
from tests.cluster.redis_cluster import RedisCluster

pytestmark = [pytest.mark.services]

JPEG = b"\xff\xd8\xff"


@pytest.fixture
async def cluster_memory(redis_cluster: RedisCluster) -> AsyncIterator[MemoryConfig]:
    """A Redis memory config on the cluster under a unique prefix, whose keys are deleted afterwards."""
    prefix = f"fsatest-{uuid.uuid4().hex[:8]}"
    yield MemoryConfig(
        backend="redis", redis=RedisConfig(url=redis_cluster.url, key_prefix=prefix, cluster=True)
    )
    client = aioredis.RedisCluster.from_url(redis_cluster.url)
    for key in [k async for k in client.scan_iter(match=f"{prefix}*")]:
        await client.delete(key)
    await client.aclose()


async def test_pictures_are_stored_and_read_back_with_each_stream_in_one_slot_on_several_masters(
    redis_cluster: RedisCluster, cluster_memory: MemoryConfig
) -> None:
    streams = [f"cam{i}" for i in range(6)]
    store = open_pictures(cluster_memory, PicturesConfig(max_per_stream=3))
    assert isinstance(store, RedisPictures)
    async with store:
        for stream in streams:  # five pictures each, three kept: the cap's trim runs in the stream's slot
            await store.put(stream, [(k, JPEG + stream.encode() + bytes([k])) for k in range(5)])
        assert await store.keep_only("cam1", [3, 4, 99]) == 1
        await store.delete("cam0")
        client = aioredis.RedisCluster.from_url(redis_cluster.url)
        prefix = store.prefix
        keys = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}:*")])
        await client.aclose()
    async with RedisPictures(cluster_memory, max_per_stream=3) as again:  # a restart, or another agent
        listed = await again.streams()
        kept = {s: await again.keys(s) for s in streams}
        between = await again.keys_between("cam2", 0, 3)
        jpeg = await again.get("cam5", 4)
    assert listed == streams[1:]
    assert kept == {"cam0": [], "cam1": [3, 4], **{s: [2, 3, 4] for s in streams[2:]}}
    assert (between, jpeg) == ([2, 3], JPEG + b"cam5\x04")
    expected = [f"{prefix}:{{{s}}}:{kind}" for s in streams[1:] for kind in ("j", "t")]
    assert keys == sorted([*expected, f"{prefix}:streams"])
    slots = {s: {key_slot(f"{prefix}:{{{s}}}:{kind}".encode()) for kind in ("j", "t")} for s in streams[1:]}
    assert all(len(v) == 1 for v in slots.values()), slots
    masters = {redis_cluster.node_of(next(iter(v))) for v in slots.values()}
    assert len(masters) >= 2, masters
