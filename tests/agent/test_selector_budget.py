"""The agent's selector caches hold only their own state, within a byte budget, and say what then."""

from __future__ import annotations

import torch

from agent.selector_caches import SelectorCaches, state_bytes_per_row
from flexselect.budget import frame_groups
from flexselect.lite import LiteScorer
from tests.selector.selector_helpers import QUESTION, paired, tiny_adapter, tiny_selector


def setup(max_rows_of_state: int | None):
    adapter = tiny_adapter("qwen2_5_vl")
    selector = tiny_selector(adapter)
    row = state_bytes_per_row(selector)
    max_bytes = None if max_rows_of_state is None else row * max_rows_of_state
    tokens = paired(selector, adapter, 12)  # 24 rows
    prompt = adapter.prompt(QUESTION)
    caches = SelectorCaches(
        selector, prompt.prefix_ids, max_group_tokens=16, max_group_frames=64, max_bytes=max_bytes
    )
    return selector, tokens, prompt, caches


def test_the_cache_keeps_the_layout_of_its_rows_but_no_copy_of_their_selector_embeddings():
    _, tokens, prompt, caches = setup(None)
    caches.ingest("cam", tokens)
    cache = caches.cache("cam")
    assert len(cache) == len(tokens)
    assert all(g.tokens is not None and g.tokens.lite.shape[1] == 0 for g in cache.groups)
    assert caches.scores("cam", tokens, prompt).shape == (len(tokens),)


def test_state_bytes_per_row_counts_keys_and_values_below_the_last_layer_and_keys_in_it():
    selector, tokens, prompt, caches = setup(None)
    caches.ingest("cam", tokens)
    cache = caches.cache("cam")
    p = len(prompt.prefix_ids)
    assert cache.nbytes() == state_bytes_per_row(selector) * (len(tokens) + p * len(cache.groups))


def test_past_the_byte_budget_a_question_is_scored_by_fresh_passes_and_keeps_no_cache():
    selector, tokens, prompt, caches = setup(max_rows_of_state=20)  # fewer than the 24 rows
    caches.ingest("cam", tokens)
    assert len(caches.cache("cam")) == 0 and caches.stats["cam"].cleared == 1
    scores = caches.scores("cam", tokens, prompt)
    groups = frame_groups(tokens, grouping="contiguous", max_frames=64, max_tokens=16)
    assert len(groups) == 2
    expected = torch.cat([LiteScorer(selector).score(prompt, tokens.select(g)) for g in groups])
    assert caches.stats["cam"].fresh == 1 and len(caches.cache("cam")) == 0
    torch.testing.assert_close(scores, expected)
