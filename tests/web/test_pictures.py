"""Evidence pictures: JPEG size, both backends' storage rules, eviction in step with tokens, restarts."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
import torch
from PIL import Image

from agent.memory import MemoryConfig, open_memory
from agent.memory.config import PicturesConfig
from agent.memory.thumbnails import LocalPictures, RedisPictures, encode_jpeg, frame_key
from agent.models import TOY_MODEL_DIR
from agent.pictures import Pictures
from streams.synth import GroundTruth
from tests.agent.service_helpers import agent_config, running
from tests.memory.memory_helpers import make_tokens
from tests.mqtt.mqtt_helpers import HOST, PORT, reachable

JPEG = b"\xff\xd8\xff"


def test_a_thumbnail_is_a_jpeg_no_larger_than_max_side_and_small_frames_keep_their_size() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    big = Image.open(io.BytesIO(encode_jpeg(frame, max_side=160, quality=80)))
    small = Image.open(io.BytesIO(encode_jpeg(frame[:56, :56], max_side=160, quality=80)))
    assert (big.format, big.size, small.size) == ("JPEG", (160, 120), (56, 56))


def test_frame_keys_are_whole_microseconds() -> None:
    assert frame_key(1_700_000_009.0) == 1_700_000_009_000_000
    assert frame_key(0.5000004) == 500_000


async def test_local_pictures_are_capped_and_survive_a_restart_through_their_file(tmp_path: Path) -> None:
    path = tmp_path / "memory.safetensors.pictures.zip"
    async with LocalPictures(path, max_per_stream=3) as store:
        await store.put("cam", [(k, JPEG + bytes([k])) for k in range(5)])
        await store.put("door", [(7, JPEG)])
        assert await store.keep_only("door", []) == 1
    async with LocalPictures(path, max_per_stream=3) as again:
        assert await again.keys("cam") == [2, 3, 4]
        assert await again.keys_between("cam", 3, 10) == [3, 4]
        assert await again.get("cam", 4) == JPEG + b"\x04"
        assert await again.streams() == ["cam"]


@pytest.fixture
async def redis_memory() -> AsyncIterator[MemoryConfig]:
    prefix = f"fsatest-{uuid.uuid4().hex[:8]}"
    yield MemoryConfig.model_validate({"backend": "redis", "redis": {"key_prefix": prefix}})
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.mark.services
async def test_redis_pictures_are_capped_kept_only_for_retained_frames_and_shared(
    redis_memory: MemoryConfig,
) -> None:
    async with RedisPictures(redis_memory, max_per_stream=3) as store:
        await store.put("cam", [(k, JPEG + bytes([k])) for k in range(5)])
        assert await store.keys("cam") == [2, 3, 4]
        assert await store.keys_between("cam", 0, 3) == [2, 3]
        assert await store.keep_only("cam", [3, 4, 99]) == 1
    async with RedisPictures(redis_memory, max_per_stream=3) as other:  # another agent, or a restart
        assert (await other.keys("cam"), await other.get("cam", 3)) == ([3, 4], JPEG + b"\x03")
        assert await other.streams() == ["cam"]
        await other.delete("cam")
        assert await other.keys("cam") == [] and await other.streams() == []


@pytest.mark.services
async def test_a_redis_stream_whose_pictures_were_all_swept_is_no_longer_listed(
    redis_memory: MemoryConfig,
) -> None:
    async with RedisPictures(redis_memory, max_per_stream=3) as store:
        await store.put("cam", [(1, JPEG)])
        await store.put("door", [(2, JPEG)])
        assert await store.keep_only("door", []) == 1
        assert await store.streams() == ["cam"]


@pytest.mark.services
async def test_a_sweep_reads_the_retained_times_not_the_embeddings(redis_memory: MemoryConfig) -> None:
    tokens = make_tokens(range(8), rows=4, cols=4, dim=1024)  # 128 rows of 4 KiB embeddings
    async with open_memory(redis_memory) as memory, RedisPictures(redis_memory, max_per_stream=64) as store:
        await memory.append("cam", tokens, torch.ones(len(tokens)))
        await store.put("cam", [(frame_key(float(t)), JPEG) for t in range(10)])
        before = (await memory.stats()).bytes_read
        dropped = await Pictures(store, memory, PicturesConfig()).sweep("cam")
        read = (await memory.stats()).bytes_read - before
        kept = await store.keys("cam")
    assert dropped == 2 and kept == [frame_key(float(t)) for t in range(8)]  # frames 8 and 9: no tokens
    assert 0 < read < len(tokens) * 128  # metadata; the embeddings alone are 128 x 4,096 bytes


@pytest.mark.services
async def test_redis_pictures_on_a_standalone_redis_read_the_keys_earlier_versions_wrote(
    redis_memory: MemoryConfig,
) -> None:
    prefix = f"{redis_memory.redis.key_prefix}-pictures"
    raw = aioredis.Redis(host="127.0.0.1", port=6379)
    await raw.hset(f"{prefix}:cam:j", mapping={"7": JPEG + b"old"})  # the layout before Cluster support
    await raw.zadd(f"{prefix}:cam:t", {"7": 7})
    await raw.sadd(f"{prefix}:streams", "cam")
    async with RedisPictures(redis_memory, max_per_stream=3) as store:
        await store.put("cam", [(8, JPEG + b"new")])
        read = (await store.streams(), await store.keys("cam"), await store.get("cam", 7))
    keys = sorted([k.decode() async for k in raw.scan_iter(match=f"{prefix}:*")])
    await raw.aclose()
    assert read == (["cam"], [7, 8], JPEG + b"old")
    assert keys == [f"{prefix}:cam:j", f"{prefix}:cam:t", f"{prefix}:streams"]  # no hash tags off-cluster


async def _get(url: str) -> tuple[int, bytes]:
    def fetch() -> tuple[int, bytes]:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()

    return await asyncio.to_thread(fetch)


@pytest.mark.services
@pytest.mark.slow
async def test_pictures_are_evicted_with_their_tokens_and_still_shown_after_a_restart(
    world: tuple[Path, GroundTruth], tmp_path: Path
) -> None:
    if not reachable(HOST, PORT):
        pytest.skip(f"no Mosquitto at {HOST}:{PORT}")
    path, truth = world
    prefix = f"fsatest-{uuid.uuid4().hex[:10]}"
    memory = {
        "snapshot_path": str(tmp_path / "memory.safetensors"),
        "retention": {"max_tokens_per_stream": 16, "floor_tokens_per_bucket": 0, "recent_seconds": 0},
    }
    stream = {"id": "cam", "uri": str(path), "source": {"sample_fps": 2.0, "chunk_seconds": 2.0}}
    config = agent_config(TOY_MODEL_DIR, [stream], prefix, memory=memory, pictures={"sweep_every_chunks": 1})
    async with running(config) as app:
        assert app.memory is not None and app.http is not None and app.pictures is not None
        health, counters = app.ingests["cam"].health, app.pictures.counters
        async with asyncio.timeout(60):  # every frame decoded, and the last chunk's pictures stored and swept
            while health.frames < truth.frame_count or counters.chunks < health.chunks:
                await asyncio.sleep(0.1)
        retained = (await app.memory.read(["cam"]))["cam"]
        token_frames = {frame_key(t) for t in torch.unique(retained.tokens.time).tolist()}
        kept = await app.pictures.store.keys("cam")
        assert len(retained) == 16 and len(token_frames) < truth.frame_count // 2  # some frames evicted
        assert kept == sorted(token_frames)

    restarted = agent_config(TOY_MODEL_DIR, [], prefix, memory=memory)
    async with running(restarted) as app:
        assert app.http is not None
        status, body = await _get(f"{app.http.base_url}/api/v1/streams/cam/pictures")
        listing = json.loads(body)
        assert status == 200 and listing["total"] == len(token_frames)
        assert [frame_key(_seconds(p["time"])) for p in listing["pictures"]] == sorted(token_frames)
        status, jpeg = await _get(listing["pictures"][0]["url"])
        assert status == 200 and jpeg.startswith(JPEG)


def _seconds(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339).timestamp()
