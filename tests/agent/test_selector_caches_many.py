"""`SelectorCaches.ingest_many`: the chunks of many streams enter their caches in one selector pass."""

from __future__ import annotations

import pytest

from agent.selector_caches import SelectorCaches
from flexselect.lite import SelectorError
from flexselect.lite.tokens import PairedTokens, layout_of
from tests.selector.selector_helpers import (
    QUESTION,
    counting,
    frame_chunks,
    paired,
    tiny_adapter,
    tiny_selector,
)

TOLERANCE = 1e-5
STREAMS = ["door", "yard", "hall"]


@pytest.fixture(scope="module")
def world():
    adapter = tiny_adapter("qwen2_5_vl")
    selector = tiny_selector(adapter)
    tokens = {name: paired(selector, adapter, 12, seed=seed) for seed, name in enumerate(STREAMS)}
    return adapter.prompt(QUESTION), selector, tokens


def chunks(tokens: PairedTokens) -> list[PairedTokens]:
    """Chunks of two frames each, as a stream delivers them (frames 0-2, 4-6, 8-10)."""
    return frame_chunks(tokens, 2)


def new_caches(world, **limits: int) -> SelectorCaches:
    prompt, selector, _ = world
    return SelectorCaches(selector, prompt.prefix_ids, max_group_tokens=10_000, max_group_frames=3, **limits)


def ingested_one_by_one(world, order: list[tuple[str, int]], **limits: int) -> SelectorCaches:
    caches = new_caches(world, **limits)
    for name, k in order:
        caches.ingest(name, chunks(world[2][name])[k])
    return caches


def ingested_together(world, order: list[tuple[str, int]], **limits: int) -> SelectorCaches:
    caches = new_caches(world, **limits)
    caches.ingest_many([(name, chunks(world[2][name])[k]) for name, k in order])
    return caches


def test_chunks_of_three_streams_ingested_together_score_as_ingested_one_by_one(world):
    prompt, _, tokens = world
    order = [(name, k) for k in range(3) for name in STREAMS]
    alone, together = ingested_one_by_one(world, order), ingested_together(world, order)
    for name in STREAMS:
        expected = alone.scores(name, tokens[name], prompt)
        assert (together.scores(name, tokens[name], prompt) - expected).abs().max() <= TOLERANCE
        assert (alone.stats[name].rebuilds, together.stats[name].rebuilds) == (0, 0)


def test_each_round_of_a_batch_runs_the_selector_once_whatever_the_number_of_streams(world):
    caches = new_caches(world)
    caches.ingest("door", chunks(world[2]["door"])[0])  # warm: the shared prefix pass is done
    batch = [(name, chunks(world[2][name])[k]) for k in (0, 1) for name in ("yard", "hall")]
    batch.append(("door", chunks(world[2]["door"])[1]))
    with counting(world[1].layers[0].self_attn.q_proj) as calls:
        caches.ingest_many(batch)
    assert calls[0] == 2  # round 1: door, yard, hall; round 2: yard, hall


def test_two_chunks_of_one_stream_in_one_batch_enter_in_time_order(world):
    prompt, _, tokens = world
    order = [("door", 0), ("door", 1), ("yard", 0), ("door", 2)]
    alone, together = ingested_one_by_one(world, order), ingested_together(world, order)
    expected = alone.scores("door", tokens["door"], prompt)
    assert (together.scores("door", tokens["door"], prompt) - expected).abs().max() <= TOLERANCE
    assert [sorted(g.frames) for g in together.caches["door"].groups] == [[0, 2, 4], [6, 8, 10]]


def test_a_batch_taking_a_stream_past_its_row_limit_clears_it_as_one_by_one_would(world):
    rows = len(chunks(world[2]["door"])[0])  # 8 rows a chunk
    order = [("door", 0), ("yard", 0), ("door", 1), ("door", 2)]
    alone = ingested_one_by_one(world, order, max_rows=2 * rows)
    together = ingested_together(world, order, max_rows=2 * rows)
    assert [len(c.caches["door"]) for c in (alone, together)] == [0, 0]
    assert [c.stats["door"].cleared for c in (alone, together)] == [1, 1]
    assert [len(c.caches["yard"]) for c in (alone, together)] == [rows, rows]


def test_chunks_after_a_clear_in_the_same_batch_start_the_cache_again(world):
    tokens = world[2]
    rows = len(chunks(tokens["door"])[0])
    order = [("door", 0), ("door", 1), ("door", 2)]
    together = ingested_together(world, order, max_rows=rows + 1)  # door 1 clears; door 2 starts again
    assert together.stats["door"].cleared == 1
    assert sorted(together.caches["door"].groups[0].frames) == [8, 10]


def test_a_batch_with_a_chunk_lacking_selector_rows_is_refused_whole(world):
    caches = new_caches(world)
    door, yard = chunks(world[2]["door"])[0], chunks(world[2]["yard"])[0]
    with pytest.raises(SelectorError, match="PairedTokens"):
        caches.ingest_many([("door", door), ("yard", layout_of(yard))])
    assert caches.caches == {}
