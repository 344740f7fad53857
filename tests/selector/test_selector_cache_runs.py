"""Cached ingest of many streams at once: pieces of several caches run through the selector together."""

from __future__ import annotations

import pytest
import torch

from flexselect.lite import SelectorCache, SelectorError
from flexselect.lite.cache import run_extends
from tests.selector.selector_helpers import (
    QUESTION,
    counting,
    frame_chunks,
    paired,
    tiny_adapter,
    tiny_selector,
)

TOLERANCE = 1e-5
FAMILIES = ["qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module", params=FAMILIES)
def world(request):
    adapter = tiny_adapter(request.param)
    selector = tiny_selector(adapter)
    streams = [paired(selector, adapter, 12, seed=seed) for seed in range(3)]
    return adapter, selector, streams


def new_cache(world, **limits) -> SelectorCache:
    adapter, selector, _ = world
    return SelectorCache(selector, adapter.prompt(QUESTION).prefix_ids, max_group_frames=3, **limits)


def one_by_one(world) -> list[SelectorCache]:
    caches = [new_cache(world) for _ in world[2]]
    for cache, tokens in zip(caches, world[2], strict=True):
        for piece in frame_chunks(tokens, 2):
            cache.append(piece)
    return caches


def together(world) -> list[SelectorCache]:
    caches = [new_cache(world) for _ in world[2]]
    per_stream = [frame_chunks(tokens, 2) for tokens in world[2]]
    for k in range(len(per_stream[0])):
        jobs = [job for cache, parts in zip(caches, per_stream, strict=True) for job in cache.plan(parts[k])]
        run_extends(world[1], jobs)
    return caches


def assert_same_cache(a: SelectorCache, b: SelectorCache) -> None:
    assert len(a.groups) == len(b.groups)
    for ga, gb in zip(a.groups, b.groups, strict=True):
        for kva, kvb in zip([*ga.past, ga.last], [*gb.past, gb.last], strict=True):
            assert kva.key.shape == kvb.key.shape
            assert (kva.key - kvb.key).abs().max() <= TOLERANCE
            if kva.value is not None:
                assert (kva.value - kvb.value).abs().max() <= TOLERANCE
        assert torch.equal(ga.tokens.frame, gb.tokens.frame)
        assert torch.equal(ga.tokens.grid, gb.tokens.grid)
        assert torch.equal(ga.tokens.token_id, gb.tokens.token_id)
        assert torch.equal(ga.offsets, gb.offsets)
        assert (ga.extent, ga.frames) == (gb.extent, gb.frames)


def test_pieces_of_three_streams_run_together_fill_each_cache_as_one_by_one(world):
    for alone, batched in zip(one_by_one(world), together(world), strict=True):
        assert_same_cache(alone, batched)


def test_caches_filled_together_score_a_question_as_caches_filled_one_by_one(world):
    prompt = world[0].prompt(QUESTION)
    for alone, batched in zip(one_by_one(world), together(world), strict=True):
        assert (alone.score(prompt) - batched.score(prompt)).abs().max() <= TOLERANCE


def test_a_chunk_straddling_two_groups_plans_one_piece_for_each(world):
    cache = new_cache(world)
    first, second, _ = frame_chunks(world[2][0], 2)  # frames (0, 2), (4, 6), (8, 10); groups of 3 frames
    cache.append(first)
    jobs = cache.plan(second)
    assert [job.group for job in jobs] == cache.groups
    assert [job.piece.frame.unique().tolist() for job in jobs] == [[4], [6]]
    assert len(cache.groups[1]) == 0  # opened, holding only the prefix until the plan runs
    run_extends(world[1], jobs)
    assert [sorted(g.frames) for g in cache.groups] == [[0, 2, 4], [6]]


def test_two_unrun_plans_of_one_cache_are_refused_together(world):
    cache = new_cache(world)
    first, second, _ = frame_chunks(world[2][0], 2)
    jobs = cache.plan(first) + cache.plan(second)
    with pytest.raises(SelectorError, match="one after the other"):
        run_extends(world[1], jobs)


def test_one_round_over_many_streams_runs_each_selector_layer_once(world):
    _, selector, streams = world
    first = new_cache(world)
    caches = [first] + [new_cache(world, prefix=first.prefix_state()) for _ in streams[1:]]
    per_stream = [frame_chunks(tokens, 2) for tokens in streams]
    for cache, parts in zip(caches, per_stream, strict=True):
        cache.append(parts[0])
    layer0, last = selector.layers[0].self_attn.q_proj, selector.last.self_attn.k_proj
    with counting(layer0) as calls, counting(last) as last_calls:
        jobs = [job for cache, parts in zip(caches, per_stream, strict=True) for job in cache.plan(parts[1])]
        run_extends(selector, jobs)
    assert len(jobs) == 6  # each stream's chunk straddles two groups
    assert (calls[0], last_calls[0]) == (1, 1)


def test_groups_share_the_prefix_state_instead_of_recomputing_it(world):
    cache = new_cache(world)
    with counting(world[1].layers[0].self_attn.q_proj) as calls:
        for piece in frame_chunks(world[2][0], 2):
            cache.append(piece)
    assert len(cache.groups) == 2
    assert calls[0] == 1 + 3  # the prefix once, then one pass per chunk
