"""Cached scoring: ingest once, score questions against the cache, evict without recomputing, rebuild."""

from __future__ import annotations

import pytest
import torch

from flexselect.lite import LiteScorer, SelectorCache, SelectorError, StreamCaches
from flexselect.lite.tokens import PairedTokens
from flexselect.training.loss import spearman
from tests.selector.selector_helpers import QUESTION, paired, tiny_adapter, tiny_selector

TOLERANCE = 1e-4


def chunks(tokens: PairedTokens, frames_per_chunk: int) -> list[PairedTokens]:
    """Consecutive chunks of whole frames, as a stream delivers them."""
    ids = torch.unique(tokens.frame)
    return [
        tokens.select(torch.isin(tokens.frame, ids[i : i + frames_per_chunk]))
        for i in range(0, len(ids), frames_per_chunk)
    ]


@pytest.fixture(scope="module")
def ingested():
    adapter = tiny_adapter("qwen2_5_vl")
    selector = tiny_selector(adapter)
    return adapter, selector, paired(selector, adapter, 24)  # 12 temporal steps of 4 tokens


@pytest.fixture
def qwen(ingested):
    return ingested[0]


@pytest.fixture
def selector(ingested):
    return ingested[1]


@pytest.fixture
def stream(ingested):
    adapter, selector, tokens = ingested
    prompt = adapter.prompt(QUESTION)
    cache = SelectorCache(selector, prompt.prefix_ids, max_group_tokens=20)
    for chunk in chunks(tokens, 2):
        cache.append(chunk)
    return cache, tokens, prompt


def fresh(selector, prompt, tokens, groups):
    return torch.cat([LiteScorer(selector).score(prompt, tokens.select(g)) for g in groups])


def test_cached_scores_equal_a_fresh_pass_over_the_same_groups(stream, selector):
    cache, tokens, prompt = stream
    assert len(cache.groups) == 3
    expected = fresh(selector, prompt, tokens, cache.group_indices())
    assert (cache.score(prompt) - expected).abs().max() <= TOLERANCE


def test_groups_hold_whole_frames_within_the_token_limit(stream):
    cache, tokens, _ = stream
    for group in cache.groups:
        assert len(group) <= 20
    frames = [set(g.tokens.frame.tolist()) for g in cache.groups]
    assert all(not a & b for i, a in enumerate(frames) for b in frames[i + 1 :])
    assert torch.equal(cache.tokens.lite, tokens.lite)


def test_a_question_with_another_prefix_is_refused(stream, qwen):
    cache, _, _ = stream
    other = qwen.prompt(QUESTION, system="be brief")
    with pytest.raises(SelectorError, match="prefix"):
        cache.score(other)


def test_dropping_nothing_changes_nothing(stream):
    cache, _, prompt = stream
    before = cache.score(prompt)
    cache.drop(torch.tensor([], dtype=torch.long))
    assert torch.equal(cache.score(prompt), before)


def test_dropping_keeps_the_other_rows_keys_without_recomputing(stream):
    cache, _, prompt = stream
    p = len(prompt.prefix_ids)
    keys = cache.groups[0].past[0].key.clone()
    cache.drop(torch.tensor([1, 2]))
    kept = torch.cat([torch.arange(p), p + torch.tensor([0, *range(3, 20)])])
    assert torch.equal(cache.groups[0].past[0].key, keys[:, :, kept])
    assert len(cache) == 48 - 2 and cache.score(prompt).shape == (46,)


def test_groups_untouched_by_a_drop_score_as_before(stream):
    cache, _, prompt = stream
    before = cache.score(prompt)
    cache.drop(torch.tensor([0, 5, 7]))  # all in the first group (tokens 0..19)
    assert torch.equal(cache.score(prompt)[17:], before[20:])


def test_after_a_drop_the_scores_track_a_fresh_pass_over_the_kept_tokens(stream, selector):
    cache, _, prompt = stream
    cache.drop(torch.arange(0, 48, 3))
    kept = cache.tokens
    rho = spearman(cache.score(prompt), fresh(selector, prompt, kept, cache.group_indices()))
    assert -1.0 <= rho <= 1.0  # measured and reported by bench/selector_cost.py; positions and keys differ


def test_rebuilding_after_a_drop_equals_a_fresh_pass_over_the_kept_tokens(stream, selector):
    cache, _, prompt = stream
    cache.drop(torch.arange(0, 48, 3))
    cache.rebuild()
    expected = fresh(selector, prompt, cache.tokens, cache.group_indices())
    assert (cache.score(prompt) - expected).abs().max() <= TOLERANCE


def test_a_cache_rebuilt_from_stored_tokens_scores_like_the_live_one(stream, selector):
    cache, tokens, prompt = stream
    restarted = SelectorCache(selector, prompt.prefix_ids, max_group_tokens=20)
    restarted.rebuild(tokens)
    assert (restarted.score(prompt) - cache.score(prompt)).abs().max() <= TOLERANCE


def test_dropping_a_whole_group_removes_it(stream):
    cache, _, prompt = stream
    cache.drop(torch.arange(20, 40))
    assert len(cache.groups) == 2 and cache.score(prompt).shape == (28,)


def test_drop_indices_must_be_in_range(stream):
    cache, _, _ = stream
    with pytest.raises(IndexError):
        cache.drop(torch.tensor([48]))


def test_each_stream_gets_its_own_cache(selector, qwen):
    caches = StreamCaches(selector, qwen.prompt(QUESTION).prefix_ids, max_group_tokens=64)
    caches["cam1"].append(paired(selector, qwen, 4))
    assert len(caches["cam1"]) == 8 and len(caches["cam2"]) == 0


def test_groups_hold_at_most_the_frame_limit_even_within_one_chunk(ingested):
    adapter, selector, tokens = ingested
    prefix = adapter.prompt(QUESTION).prefix_ids
    cache = SelectorCache(selector, prefix, max_group_tokens=1000, max_group_frames=3)
    for chunk in chunks(tokens, 2):
        cache.append(chunk)
    assert [len(g.frames) for g in cache.groups] == [3, 3, 3, 3]
