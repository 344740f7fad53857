"""Shared fixtures of the agent's end-to-end tests: a tiny checkpoint, a recording, the MQTT prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import torch

from flexselect.adapters import VideoLLMAdapter, load_adapter
from flexselect.lite import LiteSelector
from flexselect.tiny import save_tiny
from lab.selector.recipe import decoder_for
from streams.synth import WorldConfig, generate_world, write_world
from tests.mqtt.conftest import mosquitto, prefix, tls_files  # noqa: F401  (the MQTT fixtures)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint (56x56 frames: four tokens per temporal step)."""
    return save_tiny("qwen2_5_vl", tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8 s, 2 fps, 56x56 synthetic recording with one needle."""
    path = tmp_path_factory.mktemp("rec") / "rec.mp4"
    world = generate_world(WorldConfig(seconds=8, fps=2, width=56, height=56, needles=1, seed=3, cell=28))
    write_world(world, path)
    return path


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A unique Redis key prefix on the real server; its keys are deleted after the test."""
    name = f"fsatest-{uuid.uuid4().hex[:8]}"
    yield name
    r = aioredis.Redis(host="127.0.0.1", port=6379)
    keys = [k async for k in r.scan_iter(match=f"{name}*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


@pytest.fixture(scope="module")
def adapter(model_dir: Path) -> VideoLLMAdapter:
    """The tiny checkpoint, loaded."""
    return load_adapter(model_dir, dtype="float32")


@pytest.fixture(scope="module")
def selector_dir(adapter: VideoLLMAdapter, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny selector for the tiny model, saved as a selector directory."""
    torch.manual_seed(0)
    selector = LiteSelector.for_adapter(
        adapter, decoder_for("tiny", adapter), base_model=str(model_dir), teacher_layer=2
    )
    return selector.save(tmp_path_factory.mktemp("selector") / "tiny-selector")
