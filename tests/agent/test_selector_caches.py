"""Per-stream selector caches of a `scorer: lite` engine: ingest once, sync with memory, score questions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agent.config import ModelSection
from agent.engine import ChunkInput, Engine, merge_streams
from agent.memory import MemoryConfig, open_memory
from agent.memory.config import RetentionConfig
from agent.row_match import row_keys
from agent.selector_caches import SelectorCaches
from flexselect.adapters import VideoLLMAdapter
from flexselect.lite import LiteScorer, PairedTokens
from flexselect.pipeline import evidence_spans
from flexselect.types import TokenKind, VisualTokens

QUESTION = "what color was the square ?"
STANDING = ["describe what happens in the video", "is there a square ?"]
TOLERANCE = 1e-4
FRAMES_PER_GROUP = 3  # temporal steps per scoring group: groups straddle the 2-step chunks


def make_engine(
    adapter: VideoLLMAdapter,
    model_dir: Path,
    selector_dir: Path,
    *,
    cache_rebuild_share: float = 0.5,
    cache_max_rows: int = 65_536,
) -> Engine:
    config = ModelSection(
        name=str(model_dir),
        scorer="lite",
        selector=str(selector_dir),
        budget=8,
        max_new_tokens=3,
        max_frames_per_group=FRAMES_PER_GROUP,
    )
    return Engine(
        adapter,
        config,
        standing_prompts=STANDING,
        cache_rebuild_share=cache_rebuild_share,
        cache_max_rows=cache_max_rows,
    )


@pytest.fixture
def engine(adapter: VideoLLMAdapter, model_dir: Path, selector_dir: Path) -> Engine:
    return make_engine(adapter, model_dir, selector_dir)


def chunk(start: int, stream: str = "cam", frames: int = 4) -> ChunkInput:
    """`frames` random 56x56 frames at 2 fps from frame `start` (two temporal steps of 4 tokens each)."""
    pixels = (np.random.default_rng(start).random((frames, 56, 56, 3)) * 255).astype(np.uint8)
    times = 1_700_000_000.0 + (start + np.arange(frames)) / 2.0
    return ChunkInput(stream, pixels, times, frame_offset=start, time_origin=1_700_000_000.0, fps=2.0)


def caches(engine: Engine) -> SelectorCaches:
    assert engine.caches is not None
    return engine.caches


def fresh(engine: Engine, stream: str, tokens: VisualTokens) -> torch.Tensor:
    """A fresh selector pass over `tokens` in the groups of the stream's cache (which holds them in order)."""
    assert engine.selector is not None
    prompt = engine.adapter.prompt(QUESTION)
    groups = caches(engine).cache(stream).group_indices()
    return torch.cat([LiteScorer(engine.selector).score(prompt, tokens.select(g)) for g in groups])


def keys(tokens: VisualTokens) -> list[tuple[int, ...]]:
    return [tuple(k) for k in row_keys(tokens).tolist()]


def spans(evidence: list) -> list[tuple[float, float, int]]:
    return sorted((s.start, s.end, s.tokens) for s in evidence)


async def remember(engine: Engine, memory, starts: list[int], stream: str = "cam") -> PairedTokens:
    """Encode chunks into the engine's cache and the memory; the stream's retained tokens afterwards."""
    for start in starts:
        encoded = engine.encode(chunk(start, stream))
        await memory.append(stream, encoded.tokens, encoded.attention)
    retained = (await memory.read([stream]))[stream].tokens
    assert isinstance(retained, PairedTokens)
    return retained


def test_row_keys_number_repeated_identities_in_order_of_appearance():
    n = 4
    tokens = VisualTokens(
        embeds=torch.zeros(n, 2),
        frame=torch.tensor([0, 0, 0, 2]),
        time=torch.zeros(n, dtype=torch.float64),
        grid=torch.tensor([[-1, -1, -1], [0, 0, 0], [-1, -1, -1], [-1, -1, -1]]),
        kind=torch.tensor([TokenKind.MARKER, TokenKind.PATCH, TokenKind.MARKER, TokenKind.MARKER]).to(
            torch.int8
        ),
        token_id=torch.tensor([7, 5, 7, 7]),
    )
    assert row_keys(tokens).tolist() == [
        [0, -1, -1, -1, 2, 7, 0],
        [0, 0, 0, 0, 0, 5, 0],
        [0, -1, -1, -1, 2, 7, 1],
        [2, -1, -1, -1, 2, 7, 0],
    ]


async def test_with_nothing_dropped_cached_scores_equal_a_fresh_pass_over_the_same_groups(engine):
    async with open_memory(MemoryConfig()) as memory:
        retained = await remember(engine, memory, [0, 4, 8, 12])
    cache = caches(engine).cache("cam")
    assert cache.max_group_frames == engine.config.max_frames_per_group == FRAMES_PER_GROUP
    assert [len(g) for g in cache.group_indices()] == [12, 12, 8]
    scores = caches(engine).scores("cam", retained, engine.adapter.prompt(QUESTION))
    assert scores.shape == (32,)
    assert (scores - fresh(engine, "cam", retained)).abs().max() <= TOLERANCE
    assert caches(engine).stats["cam"].rebuilds == 0 and caches(engine).stats["cam"].dropped == 0


async def test_a_question_over_the_rows_the_cache_holds_in_order_needs_no_matching(
    adapter, model_dir, selector_dir
):
    engine = make_engine(adapter, model_dir, selector_dir, cache_rebuild_share=1.0)
    retention = RetentionConfig(max_tokens_per_stream=20)
    async with open_memory(MemoryConfig(retention=retention)) as memory:
        retained = await remember(engine, memory, [0, 4, 8, 12])
    prompt = engine.adapter.prompt(QUESTION)
    stats = caches(engine).stats["cam"]
    matched = caches(engine).scores("cam", retained, prompt)  # after evictions: matched, rows dropped
    assert (stats.in_step, stats.dropped) == (0, 32 - len(retained))
    again = caches(engine).scores("cam", retained, prompt)  # nothing evicted since: in step
    assert stats.in_step == 1 and torch.equal(again, matched)
    shuffled = torch.randperm(len(retained), generator=torch.Generator().manual_seed(1))
    assert torch.equal(caches(engine).scores("cam", retained.select(shuffled), prompt), matched[shuffled])
    assert stats.in_step == 1  # another order is matched, not taken as in step


async def test_after_evictions_the_cache_holds_only_retained_rows_and_scores_follow_their_order(
    adapter, model_dir, selector_dir
):
    engine = make_engine(adapter, model_dir, selector_dir, cache_rebuild_share=1.0)  # never rebuild
    retention = RetentionConfig(max_tokens_per_stream=20)
    async with open_memory(MemoryConfig(retention=retention)) as memory:
        retained = await remember(engine, memory, [0, 4, 8, 12])
    assert 0 < len(retained) <= 20
    cache = caches(engine).cache("cam")
    assert len(cache) == 32  # the memory evicted inside its backend; the cache learns it at the sync
    prompt = engine.adapter.prompt(QUESTION)
    scores = caches(engine).scores("cam", retained, prompt)
    assert len(cache) == len(retained)
    assert cache.tokens is not None and sorted(keys(cache.tokens)) == sorted(keys(retained))
    by_key = dict(zip(keys(cache.tokens), cache.score(prompt).tolist(), strict=True))
    assert scores.tolist() == [by_key[k] for k in keys(retained)]
    shuffled = torch.randperm(len(retained), generator=torch.Generator().manual_seed(0))
    assert torch.equal(caches(engine).scores("cam", retained.select(shuffled), prompt), scores[shuffled])
    assert caches(engine).stats["cam"].dropped == 32 - len(retained)
    assert caches(engine).stats["cam"].rebuilds == 0
    answer = engine.answer(QUESTION, [("cam", retained)], None)
    assert (answer.retained_tokens, answer.used_tokens) == (len(retained), 8)


async def test_a_restarted_engine_rebuilds_its_cache_from_memory_and_answers_the_same(
    engine, adapter, model_dir, selector_dir
):
    async with open_memory(MemoryConfig()) as memory:
        retained = await remember(engine, memory, [0, 4, 8, 12])
        before = engine.answer(QUESTION, [("cam", retained)], None)
        restarted = make_engine(adapter, model_dir, selector_dir)
        assert len(caches(restarted).cache("cam")) == 0
        again = (await memory.read(["cam"]))["cam"].tokens
        after = restarted.answer(QUESTION, [("cam", again)], None)
    assert caches(engine).stats["cam"].rebuilds == 0
    assert caches(restarted).stats["cam"].rebuilds == 1
    assert len(caches(restarted).cache("cam")) == 32
    assert after.text == before.text
    assert (
        (after.retained_tokens, after.used_tokens) == (before.retained_tokens, before.used_tokens) == (32, 8)
    )
    assert spans([e.span for e in after.evidence]) == spans([e.span for e in before.evidence])
    assert [e.span.score for e in after.evidence] == pytest.approx(
        [e.span.score for e in before.evidence], abs=TOLERANCE
    )


def test_a_cache_is_rebuilt_once_a_group_has_lost_more_than_the_share(engine):
    tokens = PairedTokens.concat([engine.encode(chunk(s)).tokens for s in (0, 4, 8, 12)])
    store = caches(engine)
    first_group = torch.arange(12)
    kept = tokens.select(torch.arange(4, 32))  # the first group loses 4 of 12 rows (33 %)
    store.sync("cam", kept)
    assert (store.stats["cam"].rebuilds, store.stats["cam"].dropped) == (0, 4)
    assert store.dropped_share("cam") == pytest.approx(4 / 12)
    kept = tokens.select(torch.cat([first_group[8:], torch.arange(12, 32)]))  # 8 of 12 (67 %)
    store.sync("cam", kept)
    assert (store.stats["cam"].rebuilds, store.stats["cam"].dropped) == (1, 8)
    assert store.dropped_share("cam") == 0.0
    assert len(store.cache("cam")) == 24
    scores = store.scores("cam", kept, engine.adapter.prompt(QUESTION))
    assert (scores - fresh(engine, "cam", kept)).abs().max() <= TOLERANCE


def test_an_ingest_past_max_rows_clears_the_cache_until_the_next_sync(adapter, model_dir, selector_dir):
    engine = make_engine(adapter, model_dir, selector_dir, cache_max_rows=16)
    encoded = [engine.encode(chunk(s)).tokens for s in (0, 4, 8)]
    store = caches(engine)
    assert len(store.cache("cam")) == 0 and store.stats["cam"].cleared == 1
    retained = PairedTokens.concat(encoded)
    store.sync("cam", retained)
    assert len(store.cache("cam")) == 24 and store.stats["cam"].rebuilds == 1


async def test_a_multi_stream_answer_ranks_both_streams_by_their_cached_scores(engine):
    async with open_memory(MemoryConfig()) as memory:
        cam = await remember(engine, memory, [0, 4], "cam")
        door = await remember(engine, memory, [100, 104], "door")
    expected = torch.cat([fresh(engine, "cam", cam), fresh(engine, "door", door)])
    answer = engine.answer(QUESTION, [("cam", cam), ("door", door)], 8)
    keep = torch.topk(expected, 8).indices.sort().values
    assert (answer.retained_tokens, answer.used_tokens) == (32, 8)
    merged, _ = merge_streams([cam, door])
    assert engine.selector is not None
    ranked = LiteScorer(engine.selector).score(engine.adapter.prompt(QUESTION), merged.select(keep))
    wanted = []
    for i, (stream, tokens) in enumerate([("cam", cam), ("door", door)]):
        ours = (keep >= 16 * i) & (keep < 16 * (i + 1))
        mine = keep[ours] - 16 * i
        if len(mine):
            found = evidence_spans(tokens.select(mine), ranked[ours], min_share=0.1)
            wanted += [(stream, s.start, s.end, s.tokens) for s in found]
    got = [(e.stream_id, e.span.start, e.span.end, e.span.tokens) for e in answer.evidence]
    assert sorted(got) == sorted(wanted) and wanted
