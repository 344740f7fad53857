"""Matching cached rows to retained rows by hashed identities: exact where it matters, fast at any size."""

from __future__ import annotations

import torch

import agent.row_match as row_match
from agent.row_match import row_keys
from agent.selector_caches import SelectorCaches
from tests.selector.selector_helpers import QUESTION, paired, tiny_adapter, tiny_selector


def all_zero(rows: torch.Tensor) -> torch.Tensor:
    """A hash (or code) under which every row collides."""
    return torch.zeros(len(rows), dtype=torch.int64)


def test_row_codes_are_equal_exactly_where_row_keys_are():
    adapter = tiny_adapter("qwen2_5_vl")
    tokens = paired(tiny_selector(adapter), adapter, 8)
    doubled = tokens.select(torch.cat([torch.arange(len(tokens)), torch.arange(4)]))  # repeated identities
    codes = row_match.row_codes(row_match.identity(doubled))
    keys = row_keys(doubled)
    same_code = codes[:, None] == codes[None]
    same_key = (keys[:, None] == keys[None]).all(-1)
    assert torch.equal(same_code, same_key) and len(torch.unique(codes)) == len(doubled)


def test_colliding_hashes_and_codes_fall_back_to_the_exact_keys_with_the_same_scores(monkeypatch):
    adapter = tiny_adapter("qwen2_5_vl")
    selector = tiny_selector(adapter)
    tokens = paired(selector, adapter, 12)
    prompt = adapter.prompt(QUESTION)

    def scores() -> torch.Tensor:
        stream = SelectorCaches(selector, prompt.prefix_ids, max_group_tokens=16, max_group_frames=64)
        stream.ingest("cam", tokens)
        retained = tokens.select(torch.arange(4, len(tokens)))  # the memory evicted the first rows
        return stream.scores("cam", retained, prompt)

    expected = scores()
    monkeypatch.setattr(row_match, "hash_rows", all_zero)
    monkeypatch.setattr(row_match, "row_codes", all_zero)
    assert torch.equal(scores(), expected)


def test_colliding_hashes_in_the_sorted_match_fall_back_to_the_exact_keys(monkeypatch):
    adapter = tiny_adapter("qwen2_5_vl")
    selector = tiny_selector(adapter)
    tokens = paired(selector, adapter, 12)
    prompt = adapter.prompt(QUESTION)
    retained = tokens.select(torch.arange(4, len(tokens)))  # the memory evicted the first rows

    def scores() -> tuple[torch.Tensor, int]:
        stream = SelectorCaches(selector, prompt.prefix_ids, max_group_tokens=16, max_group_frames=64)
        stream.ingest("cam", tokens)
        return stream.scores("cam", retained, prompt), stream.stats["cam"].dropped

    expected = scores()
    assert expected[1] == 4
    monkeypatch.setattr(row_match, "hash_rows", all_zero)
    collided = scores()
    assert torch.equal(collided[0], expected[0]) and collided[1] == 4


def test_a_retained_row_the_cache_lacks_rebuilds_it_with_the_same_scores():
    adapter = tiny_adapter("qwen2_5_vl")
    selector = tiny_selector(adapter)
    tokens = paired(selector, adapter, 12)
    prompt = adapter.prompt(QUESTION)
    stream = SelectorCaches(selector, prompt.prefix_ids, max_group_tokens=16, max_group_frames=64)
    stream.ingest("cam", tokens.select(torch.arange(8, len(tokens))))  # the cache missed the first rows
    rebuilt = stream.scores("cam", tokens, prompt)
    fresh = SelectorCaches(selector, prompt.prefix_ids, max_group_tokens=16, max_group_frames=64)
    fresh.ingest("cam", tokens)
    assert stream.stats["cam"].rebuilds == 1
    assert torch.equal(rebuilt, fresh.scores("cam", tokens, prompt))
