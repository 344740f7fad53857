"""Restarting the agent on the real Redis: frames keep a unique identity, recordings are not read twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch

from agent.app import AgentApp
from agent.memory import RetainedTokens
from streams import StreamState
from tests.agent.service_helpers import agent_config, ask, client, running, wait_for_memory
from tests.streams.conftest import RtspServer, gstreamer_missing

pytestmark = [pytest.mark.services, pytest.mark.slow]

TOKENS_PER_STEP = 4  # the tiny model: 56x56 frames, two frames per temporal step
RECORDING_TOKENS = 32  # 8 s at 2 fps: 16 frames, 8 steps


def redis_memory(prefix: str) -> dict[str, Any]:
    return {"backend": "redis", "redis": {"url": "redis://127.0.0.1:6379/0", "key_prefix": prefix}}


async def retained(app: AgentApp, stream: str) -> RetainedTokens:
    assert app.memory is not None
    return (await app.memory.read([stream]))[stream]


def frame_times(tokens: RetainedTokens) -> dict[int, set[float]]:
    """Each frame number held, with the times of its tokens (one time per frame when identity holds)."""
    out: dict[int, set[float]] = {}
    for frame, t in zip(tokens.tokens.frame.tolist(), tokens.tokens.time.tolist(), strict=True):
        out.setdefault(frame, set()).add(t)
    return out


def assert_frame_identity(tokens: RetainedTokens) -> None:
    """One time per frame number, and frame order is time order."""
    frames = frame_times(tokens)
    assert all(len(times) == 1 for times in frames.values()), {f: t for f, t in frames.items() if len(t) > 1}
    ordered = [next(iter(frames[f])) for f in sorted(frames)]
    assert ordered == sorted(ordered)


@pytest.fixture
def camera(recording: Path):
    if (reason := gstreamer_missing()) is not None:
        pytest.skip(reason)
    server = RtspServer(recording)
    server.start()
    yield server
    server.kill()


async def test_a_restarted_camera_continues_its_frame_numbers_and_answers(
    model_dir, camera, prefix, redis_prefix
):
    stream = {"id": "cam", "uri": camera.url(), "source": {"sample_fps": 2, "chunk_seconds": 1}}
    config = agent_config(model_dir, [stream], prefix, memory=redis_memory(redis_prefix))
    async with running(config) as app:
        await wait_for_memory(app, "cam", 3 * TOKENS_PER_STEP)
        before = await retained(app, "cam")
    async with running(config) as app, client(prefix) as link:
        await wait_for_memory(app, "cam", len(before) + 3 * TOKENS_PER_STEP)
        after = await retained(app, "cam")
        reply = await ask(link, "what color was the square ?", streams=["cam"])
    assert_frame_identity(after)
    first_run = set(before.tokens.frame.tolist())
    second_run = set(after.tokens.frame.tolist()) - first_run
    assert second_run and min(second_run) > max(first_run)
    assert reply["ok"], reply
    assert all(e["start"] <= e["end"] for e in reply["evidence"])


def recording_stream(recording: Path, **fields: Any) -> dict[str, Any]:
    return {"id": "rec", "uri": str(recording), "source": {"sample_fps": 2, "chunk_seconds": 2}, **fields}


async def ingest_to_the_end(app: AgentApp) -> None:
    ingest = app.ingests["rec"]
    await asyncio.wait_for(ingest.finished.wait(), 60)
    assert ingest.health.state is StreamState.ENDED


async def test_a_restarted_recording_is_not_ingested_again(model_dir, recording, prefix, redis_prefix):
    config = agent_config(model_dir, [recording_stream(recording)], prefix, memory=redis_memory(redis_prefix))
    for _ in range(3):
        async with running(config) as app:
            await ingest_to_the_end(app)
            assert app.memory is not None
            stats = (await app.memory.stats("rec")).streams["rec"]
            held = await retained(app, "rec")
        assert (stats.appended, stats.tokens) == (RECORDING_TOKENS, RECORDING_TOKENS)
        assert_frame_identity(held)


async def test_a_recording_stopped_midway_resumes_on_the_same_timeline(
    model_dir, recording, prefix, redis_prefix
):
    # Paced at real time so that the first run stops with half of the recording ingested.
    stream = recording_stream(recording, source={"sample_fps": 2, "chunk_seconds": 2, "realtime": True})
    config = agent_config(model_dir, [stream], prefix, memory=redis_memory(redis_prefix))
    async with running(config) as app:
        await wait_for_memory(app, "rec", RECORDING_TOKENS // 2)
        first = await retained(app, "rec")
    assert len(first) < RECORDING_TOKENS
    async with running(config) as app:
        await ingest_to_the_end(app)
        assert app.memory is not None
        stats = (await app.memory.stats("rec")).streams["rec"]
        held = await retained(app, "rec")
    assert (stats.appended, stats.tokens) == (RECORDING_TOKENS, RECORDING_TOKENS)
    assert_frame_identity(held)
    times = torch.unique(held.tokens.time)
    origin = float(times[0])
    # The second run's frames sit on the first run's timeline: one step every second from the same origin.
    assert torch.allclose(times - origin, torch.arange(0.0, 8.0, 1.0, dtype=torch.float64))
    assert float(first.tokens.time.min()) == origin


async def test_a_replaced_recording_is_ingested_once_more_from_scratch(
    model_dir, recording, prefix, redis_prefix
):
    stream = recording_stream(recording, restart="replace")
    config = agent_config(model_dir, [stream], prefix, memory=redis_memory(redis_prefix))
    origins = []
    for _ in range(2):
        async with running(config) as app:
            await ingest_to_the_end(app)
            assert app.memory is not None
            stats = (await app.memory.stats("rec")).streams["rec"]
            held = await retained(app, "rec")
            origins.append(float(held.tokens.time.min()))
        assert (stats.appended, stats.tokens) == (RECORDING_TOKENS, RECORDING_TOKENS)
        assert_frame_identity(held)
    assert origins[1] > origins[0]  # replaced: the new run's own time origin
