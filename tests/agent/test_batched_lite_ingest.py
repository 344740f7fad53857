"""Ingest with `model.scorer: lite` batched across streams: each chunk's tokens, selector embeddings and
ingest attention equal encoding it alone, and the selector caches hold the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agent.config import ModelSection
from agent.engine import ChunkInput, EncodedChunk, Engine
from flexselect.adapters import VideoLLMAdapter
from flexselect.lite import PairedTokens

STANDING = ["describe what happens in the video", "is there a square ?"]
STREAMS = ("cam0", "cam1", "cam2")
PROMPT = "what color was the square ?"


def make_engine(adapter: VideoLLMAdapter, model_dir: Path, selector_dir: Path) -> Engine:
    config = ModelSection(name=str(model_dir), scorer="lite", selector=str(selector_dir), budget=8)
    return Engine(adapter, config, standing_prompts=STANDING)


def chunk(stream: int, index: int, frames: int = 4) -> ChunkInput:
    """Chunk `index` of stream `stream`: random 56x56 frames at 2 fps."""
    start = index * 4
    pixels = np.random.default_rng(100 * stream + index).integers(0, 256, (frames, 56, 56, 3), dtype=np.uint8)
    times = 1_700_000_000.0 + (start + np.arange(frames)) / 2.0
    return ChunkInput(
        STREAMS[stream], pixels, times, frame_offset=start, time_origin=1_700_000_000.0, fps=2.0
    )


# Two chunks of each stream, interleaved; the last of stream 1 is shorter (another token count).
CHUNKS = [chunk(0, 0), chunk(1, 0), chunk(2, 0), chunk(0, 1), chunk(1, 1, frames=2), chunk(2, 1)]


@pytest.fixture(scope="module")
def batched(adapter, model_dir, selector_dir) -> tuple[Engine, list[EncodedChunk]]:
    engine = make_engine(adapter, model_dir, selector_dir)
    return engine, engine.encode_batch([engine.prepare(c) for c in CHUNKS])


@pytest.fixture(scope="module")
def one_by_one(adapter, model_dir, selector_dir) -> tuple[Engine, list[EncodedChunk]]:
    engine = make_engine(adapter, model_dir, selector_dir)
    return engine, [engine.encode(c) for c in CHUNKS]


def test_each_chunk_encodes_as_it_would_alone(batched, one_by_one):
    for many, one in zip(batched[1], one_by_one[1], strict=True):
        assert many.stream_id == one.stream_id
        assert isinstance(many.tokens, PairedTokens) and isinstance(one.tokens, PairedTokens)
        for field in ("frame", "time", "grid", "kind", "token_id"):
            assert torch.equal(getattr(many.tokens, field), getattr(one.tokens, field)), field
        assert many.tokens.lite.device.type == "cpu" and many.attention.device.type == "cpu"
        torch.testing.assert_close(many.tokens.embeds, one.tokens.embeds, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(many.tokens.lite, one.tokens.lite, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(many.attention, one.attention, atol=1e-6, rtol=1e-4)


def test_the_selector_caches_hold_the_same_rows(batched, one_by_one):
    (many, _), (one, encoded) = batched, one_by_one
    assert many.caches is not None and one.caches is not None
    prompt = many.adapter.prompt(PROMPT)
    for stream in STREAMS:
        a, b = many.caches.cache(stream), one.caches.cache(stream)
        assert len(a) == len(b) == sum(len(e.tokens) for e in encoded if e.stream_id == stream)
        assert [len(g) for g in a.groups] == [len(g) for g in b.groups]
        assert a.tokens is not None and b.tokens is not None
        for field in ("frame", "time", "grid", "kind", "token_id"):
            assert torch.equal(getattr(a.tokens, field), getattr(b.tokens, field)), field
        torch.testing.assert_close(a.score(prompt), b.score(prompt), atol=1e-6, rtol=1e-4)


def test_one_tower_forward_and_one_projector_call_encode_every_stream(adapter, model_dir, selector_dir):
    engine = make_engine(adapter, model_dir, selector_dir)
    assert engine.selector is not None
    calls = {"tower": 0, "projector": 0}

    def counter(name: str):
        def count(*_: object) -> None:
            calls[name] += 1

        return count

    handles = [
        adapter.model.model.visual.register_forward_pre_hook(counter("tower")),
        engine.selector.projector.register_forward_pre_hook(counter("projector")),
    ]
    try:
        engine.encode_batch([engine.prepare(c) for c in CHUNKS])
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"tower": 1, "projector": 1}
