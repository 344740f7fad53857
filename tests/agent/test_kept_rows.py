"""The cached Lite question path reads the layout, then only the kept rows (`agent.kept_rows`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from agent.engine import Engine, EngineAnswer
from agent.kept_rows import KeptRowsStats, QuestionReads, answer_kept
from agent.memory import MemoryConfig, RedisConfig, RetentionConfig, TokenMemory, open_memory
from agent.memory.base import RetainedLayout
from agent.memory.codec import Layout
from agent.memory.rows_read import ENTRY_BYTES, record_head
from flexselect.adapters import VideoLLMAdapter
from flexselect.types import VisualTokens
from tests.agent.test_selector_caches import QUESTION, chunk, make_engine

REDIS = "redis://127.0.0.1:6379/0"


def memory_config(backend: str, prefix: str, retention: RetentionConfig | None = None) -> MemoryConfig:
    return MemoryConfig(
        backend=backend,  # type: ignore[arg-type]
        retention=retention or RetentionConfig(),
        redis=RedisConfig(url=REDIS, key_prefix=prefix),
    )


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def remember(engine: Engine, memory: TokenMemory, stream: str, starts: list[int]) -> None:
    for start in starts:
        encoded = engine.encode(chunk(start, stream))
        await memory.append(stream, encoded.tokens, encoded.attention)


async def full_answer(engine: Engine, memory: TokenMemory, streams: list[str], budget: int) -> EngineAnswer:
    retained = await memory.read(streams)
    return engine.answer(QUESTION, [(s, retained[s].tokens) for s in streams], budget)


async def kept_answer(
    engine: Engine,
    memory: TokenMemory,
    streams: list[str],
    budget: int,
    stats: KeptRowsStats,
    reads_class: type[QuestionReads] = QuestionReads,
) -> EngineAnswer:
    """What `QuestionService` does: the layout on the event loop, the answer on another thread."""
    layouts = await memory.read_layout(streams)
    reads = reads_class(memory, asyncio.get_running_loop(), streams, None, None, 30.0)
    parts = [(s, layouts[s]) for s in streams]
    return await asyncio.to_thread(answer_kept, engine, QUESTION, parts, budget, reads, stats)


def same_answer(a: EngineAnswer, b: EngineAnswer) -> None:
    assert a.text == b.text
    assert [(e.stream_id, e.span) for e in a.evidence] == [(e.stream_id, e.span) for e in b.evidence]
    assert (a.retained_tokens, a.used_tokens) == (b.retained_tokens, b.used_tokens)


async def test_kept_rows_answers_equal_the_full_read_answers_over_evictions_and_streams(
    adapter: VideoLLMAdapter, model_dir: Path, selector_dir: Path, backend: str, redis_prefix: str
) -> None:
    engine = make_engine(adapter, model_dir, selector_dir, cache_rebuild_share=1.0)
    stats = KeptRowsStats()
    retention = RetentionConfig(max_tokens_per_stream=40)  # evictions, compactions, partial chunks
    async with open_memory(memory_config(backend, redis_prefix, retention)) as memory:
        await remember(engine, memory, "cam", [0, 4, 8, 12, 16, 20])
        await remember(engine, memory, "door", [100, 104])
        for streams, budget in ((["cam"], 8), (["cam", "door"], 12), (["door", "cam"], 40)):
            full = await full_answer(engine, memory, streams, budget)
            kept = await kept_answer(engine, memory, streams, budget, stats)
            same_answer(kept, full)
            assert kept.evidence
    assert (stats.kept, stats.rebuilt, stats.gone) == (3, 0, 0)


def test_a_sequence_from_the_layout_and_the_kept_rows_equals_the_full_one(
    engine_and_tokens: tuple[VideoLLMAdapter, VisualTokens],
) -> None:
    adapter, tokens = engine_and_tokens
    prompt = adapter.prompt(QUESTION)
    keep = torch.tensor([1, 5, 6, 20, 31])
    layout = tokens.select(torch.arange(len(tokens)))
    layout.embeds = tokens.embeds[:, :0]  # metadata only
    full = adapter.build_sequence(prompt, tokens, keep)
    kept = adapter.build_sequence(prompt, layout, keep, kept_rows=tokens.select(keep))
    assert torch.equal(kept.inputs_embeds, full.inputs_embeds)
    assert torch.equal(kept.position_ids, full.position_ids)
    assert torch.equal(kept.visual_mask, full.visual_mask)
    assert kept.visual_slice == full.visual_slice


@pytest.fixture
def engine_and_tokens(
    adapter: VideoLLMAdapter, model_dir: Path, selector_dir: Path
) -> tuple[VideoLLMAdapter, VisualTokens]:
    engine = make_engine(adapter, model_dir, selector_dir)
    tokens = [engine.encode(chunk(s)).tokens for s in (0, 4, 8, 12)]
    return adapter, type(tokens[0]).concat(tokens)


async def question_bytes(engine: Engine, memory: TokenMemory, budget: int) -> tuple[int, int]:
    """(retained rows, bytes the memory read for one kept-rows question over them)."""
    before = (await memory.stats()).bytes_read
    answer = await kept_answer(engine, memory, ["cam"], budget, KeptRowsStats())
    return answer.retained_tokens, (await memory.stats()).bytes_read - before


async def test_the_bytes_a_question_reads_grow_with_the_budget_not_with_the_memory(
    adapter: VideoLLMAdapter, model_dir: Path, selector_dir: Path, backend: str, redis_prefix: str
) -> None:
    engine = make_engine(adapter, model_dir, selector_dir)
    async with open_memory(memory_config(backend, redis_prefix)) as memory:
        await remember(engine, memory, "cam", [0, 4])
        small, small_bytes = await question_bytes(engine, memory, 8)
        await remember(engine, memory, "cam", [8, 12, 16, 20, 24, 28])  # 4x the tokens
        large, large_bytes = await question_bytes(engine, memory, 8)
        _, double_bytes = await question_bytes(engine, memory, 16)
        before = (await memory.stats()).bytes_read
        await full_answer(engine, memory, ["cam"], 8)
        full_bytes = (await memory.stats()).bytes_read - before
        stored = Layout.of((await memory.read(["cam"]))["cam"].tokens)
    head = record_head(stored)
    per_chunk = 11 if backend == "redis" else 0  # Redis: each chunk's id and status byte
    assert (small, large) == (16, 64)
    assert small_bytes == 16 * ENTRY_BYTES + 2 * per_chunk + 8 * head
    assert large_bytes == 64 * ENTRY_BYTES + 8 * per_chunk + 8 * head  # 4x the memory: metadata only
    assert double_bytes - large_bytes == 8 * head  # 2x the budget: 8 more kept rows
    assert full_bytes >= 64 * stored.width > 3 * large_bytes


async def test_a_cache_without_the_rows_reads_everything_once_and_answers_the_same(
    adapter: VideoLLMAdapter, model_dir: Path, selector_dir: Path, backend: str, redis_prefix: str
) -> None:
    engine = make_engine(adapter, model_dir, selector_dir)
    async with open_memory(memory_config(backend, redis_prefix)) as memory:
        await remember(engine, memory, "cam", [0, 4, 8, 12])
        before = await full_answer(engine, memory, ["cam"], 8)
        restarted = make_engine(adapter, model_dir, selector_dir)  # an empty cache: it must be rebuilt
        stats = KeptRowsStats()
        first = await kept_answer(restarted, memory, ["cam"], 8, stats)
        second = await kept_answer(restarted, memory, ["cam"], 8, stats)
    assert (stats.kept, stats.rebuilt, stats.gone) == (1, 1, 0)
    assert first.text == second.text == before.text
    assert [e.span.tokens for e in first.evidence] == [e.span.tokens for e in before.evidence]


async def test_a_kept_row_evicted_before_it_is_read_makes_the_question_read_everything(
    adapter: VideoLLMAdapter, model_dir: Path, selector_dir: Path, backend: str, redis_prefix: str
) -> None:
    engine = make_engine(adapter, model_dir, selector_dir, cache_rebuild_share=1.0)
    retention = RetentionConfig(max_tokens_per_stream=32, floor_tokens_per_bucket=0, recent_seconds=0.0)

    class EvictFirst(QuestionReads):
        """An append evicts half the stream between the layout read and the rows read."""

        def rows(self, wanted: list[tuple[RetainedLayout, torch.Tensor]]) -> list[VisualTokens]:
            async def append() -> None:
                await remember(engine, memory, "cam", [16, 20])

            asyncio.run_coroutine_threadsafe(append(), self.loop).result(30.0)
            return super().rows(wanted)

    async with open_memory(memory_config(backend, redis_prefix, retention)) as memory:
        await remember(engine, memory, "cam", [0, 4, 8, 12])
        stats = KeptRowsStats()
        got = await kept_answer(engine, memory, ["cam"], 32, stats, EvictFirst)  # keeps every row
        want = await full_answer(engine, memory, ["cam"], 32)
    assert (stats.kept, stats.rebuilt, stats.gone) == (0, 0, 1)
    same_answer(got, want)
