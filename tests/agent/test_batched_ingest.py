"""Ingest batched across streams: one vision forward and one scoring pass per batch, results per stream
equal to encoding each chunk alone, and a bad chunk failing only its own stream."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from agent.config import ModelSection
from agent.engine import ChunkInput, Engine
from agent.worker import ModelWorker
from flexselect.adapters import Qwen25VLAdapter
from flexselect.tiny import build_tiny

SIDE = 56
STANDING = ["describe what happens in the video", "is a door open ?"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    model, processor = build_tiny("qwen2_5_vl", frame_side=SIDE)
    return Engine(Qwen25VLAdapter(model, processor), ModelSection(name="tiny"), standing_prompts=STANDING)


def chunk(stream: int, index: int, frames: int = 4) -> ChunkInput:
    rng = np.random.default_rng(1000 * stream + index)
    return ChunkInput(
        stream_id=f"s{stream}",
        frames=rng.integers(0, 256, (frames, SIDE, SIDE, 3), dtype=np.uint8),
        times=1000.0 + index * frames + np.arange(frames, dtype=np.float64),
        frame_offset=index * frames,
        time_origin=1000.0,
        fps=1.0,
    )


class Counter:
    """Counts forwards entered by a module (a pre-hook: the scorer stops the decoder early)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self._handle = module.register_forward_pre_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1

    def close(self) -> None:
        self._handle.remove()


def assert_same(batched, alone) -> None:
    assert batched.stream_id == alone.stream_id
    for field in ("frame", "time", "grid", "kind", "token_id"):
        assert torch.equal(getattr(batched.tokens, field), getattr(alone.tokens, field)), field
    torch.testing.assert_close(batched.tokens.embeds, alone.tokens.embeds, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(batched.attention, alone.attention, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("streams", [1, 5])
def test_one_vision_forward_and_one_scoring_pass_per_batch_whatever_the_streams(engine, streams):
    chunks = [chunk(k, 0) for k in range(streams)]
    tower = Counter(engine.adapter.model.model.visual)
    text = Counter(engine.adapter.text_model)
    try:
        batched = engine.encode_batch([engine.prepare(c) for c in chunks])
    finally:
        tower.close()
        text.close()
    assert tower.calls == 1
    assert text.calls == len(STANDING)  # one decoder pass per standing prompt over all the chunks
    for c, result in zip(chunks, batched, strict=True):
        assert_same(result, engine.encode(c))


def test_chunks_of_different_lengths_score_in_one_pass_per_length(engine):
    chunks = [chunk(0, 0, frames=4), chunk(1, 0, frames=2), chunk(2, 0, frames=4)]
    text = Counter(engine.adapter.text_model)
    try:
        batched = engine.encode_batch([engine.prepare(c) for c in chunks])
    finally:
        text.close()
    assert text.calls == 2 * len(STANDING)
    for c, result in zip(chunks, batched, strict=True):
        assert_same(result, engine.encode(c))


@pytest.mark.slow
def test_the_worker_encodes_waiting_chunks_of_many_streams_together(engine):
    chunks = [chunk(k, i) for i in range(2) for k in range(4)]

    async def main():
        tower = Counter(engine.adapter.model.model.visual)
        try:
            async with ModelWorker(
                engine, question_slots=2, chunk_slots=32, max_batch_chunks=6, max_consecutive=2
            ) as worker:
                results = await asyncio.gather(*(worker.encode(c) for c in chunks))
                stats = worker.stats
        finally:
            tower.close()
        return results, stats, tower.calls

    results, stats, forwards = asyncio.run(main())
    assert stats.chunks == len(chunks)
    assert forwards == stats.batches < len(chunks)
    assert stats.largest_batch > 1
    for c, result in zip(chunks, results, strict=True):
        assert_same(result, engine.encode(c))


def test_a_bad_chunk_fails_only_its_own_stream(engine):
    good = [chunk(k, 0) for k in range(3)]
    bad = chunk(9, 0)
    bad.frame_offset = 1  # not a multiple of the temporal patch: the adapter refuses it

    async def main():
        async with ModelWorker(
            engine, question_slots=2, chunk_slots=32, max_batch_chunks=8, max_consecutive=2
        ) as worker:
            return await asyncio.gather(*(worker.encode(c) for c in [*good, bad]), return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[-1], Exception)
    for c, result in zip(good, results[:-1], strict=True):
        assert_same(result, engine.encode(c))
