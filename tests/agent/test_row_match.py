"""Matching a selector cache's rows to the retained rows: the k-th retained copy of an identity is the
k-th cached copy, found by one stable sort per side, for every family's layout (repeated markers too)."""

from __future__ import annotations

import pytest
import torch

import agent.row_match as row_match
from agent.row_match import RowIndex, hash_rows, identity, match, row_keys
from agent.selector_caches import SelectorCaches
from flexselect.lite import PairedTokens
from tests.selector.selector_helpers import QUESTION, paired, tiny_adapter, tiny_selector

FAMILIES = ["qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl"]


def encoded(family: str, frames: int = 8) -> PairedTokens:
    adapter = tiny_adapter(family)
    return paired(tiny_selector(adapter), adapter, frames)


def by_keys(cached: PairedTokens, retained: PairedTokens) -> tuple[list[int], list[bool]]:
    """The matching `match` must give, by dictionary lookup of the full row keys."""
    row_of = {tuple(k): i for i, k in enumerate(row_keys(cached).tolist())}
    position = [row_of[tuple(k)] for k in row_keys(retained).tolist()]
    return position, [i not in set(position) for i in range(len(cached))]


def rows_of(tokens: PairedTokens) -> row_match.CachedRows:
    return RowIndex().rows([tokens])


def evicted(tokens: PairedTokens, count: int, seed: int) -> PairedTokens:
    """`tokens` without `count` rows chosen at random, the rest in their order."""
    gone = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))[:count]
    keep = torch.ones(len(tokens), dtype=torch.bool)
    keep[gone] = False
    return tokens.select(torch.nonzero(keep).flatten())


def refuse_exact(*_: object) -> None:
    raise AssertionError("the exact path was taken")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_after_evictions_each_retained_row_finds_its_cached_row_by_key(family, seed, monkeypatch):
    monkeypatch.setattr(row_match, "exact_match", refuse_exact)
    cached = encoded(family)
    retained = evicted(cached, len(cached) // 3, seed)
    found = match(rows_of(cached), retained)
    assert found is not None
    position, gone = found
    assert position is not None
    assert (position.tolist(), gone.tolist()) == by_keys(cached, retained)


def test_repeated_markers_are_matched_first_copy_to_first_copy_without_the_exact_path(monkeypatch):
    monkeypatch.setattr(row_match, "exact_match", refuse_exact)
    cached = encoded("qwen3_vl")
    ident = identity(cached)
    _, inverse, counts = torch.unique(ident, dim=0, return_inverse=True, return_counts=True)
    repeated = torch.nonzero(counts[inverse] > 1).flatten()
    assert len(repeated) >= 2  # the layout repeats timestamp digits within a frame
    retained = cached.select(
        torch.cat([torch.arange(0, int(repeated[0])), torch.arange(int(repeated[0]) + 1, len(cached))])
    )
    found = match(rows_of(cached), retained)
    assert found is not None and found[0] is not None
    assert (found[0].tolist(), found[1].tolist()) == by_keys(cached, retained)


def test_the_cache_holding_exactly_the_retained_rows_in_order_is_seen_without_matching():
    cached = encoded("qwen2_5_vl")
    assert match(rows_of(cached), cached) is not None
    position, gone = match(rows_of(cached), cached)  # type: ignore[misc]
    assert position is None and not bool(gone.any())


def test_a_reordered_retained_set_is_matched_row_by_row():
    cached = encoded("internvl")
    order = torch.randperm(len(cached), generator=torch.Generator().manual_seed(3))
    retained = cached.select(order)
    found = match(rows_of(cached), retained)
    assert found is not None and found[0] is not None
    assert found[0].tolist() == by_keys(cached, retained)[0] and not bool(found[1].any())


def test_one_more_retained_copy_of_a_marker_than_cached_is_a_missing_row():
    cached = encoded("qwen3_vl")
    ident = identity(cached)
    marker = int(torch.nonzero(ident[:, 4] == 2).flatten()[0])
    retained = cached.select(torch.cat([torch.arange(len(cached)), torch.tensor([marker])]))
    assert match(rows_of(cached), retained) is None


def test_a_retained_identity_the_cache_never_held_is_a_missing_row():
    cached = encoded("qwen2_5_vl", frames=8)
    later = encoded("qwen2_5_vl", frames=10)  # two more frames than the cache holds
    assert match(rows_of(cached), later) is None


def test_an_empty_retained_set_leaves_every_cached_row_gone():
    cached = encoded("llava_onevision")
    found = match(rows_of(cached), cached.select(torch.empty(0, dtype=torch.int64)))
    assert found is not None and found[0] is not None
    assert found[0].tolist() == [] and found[1].tolist() == [True] * len(cached)


def test_two_identities_sharing_a_hash_are_matched_exactly(monkeypatch):
    cached = encoded("qwen2_5_vl")
    retained = evicted(cached, 5, seed=4)
    monkeypatch.setattr(row_match, "hash_rows", lambda rows: rows[:, 0] // 4)  # frames 0-3 share one
    found = match(rows_of(cached), retained)
    assert found is not None and found[0] is not None
    assert (found[0].tolist(), found[1].tolist()) == by_keys(cached, retained)


def test_the_index_computes_a_part_once_while_it_is_the_same_object(monkeypatch):
    first, second = encoded("qwen2_5_vl", frames=4), encoded("qwen2_5_vl", frames=6)
    computed: list[int] = []

    def counted(tokens: PairedTokens) -> torch.Tensor:
        computed.append(len(tokens))
        return identity(tokens)

    monkeypatch.setattr(row_match, "identity", counted)
    index = RowIndex()
    index.rows([first, second])
    rows = index.rows([first, second])
    assert computed == [len(first), len(second)]
    replaced = second.select(torch.arange(1, len(second)))  # a group's rows changed: a new object
    changed = index.rows([first, replaced])
    assert computed == [len(first), len(second), len(replaced)]
    assert torch.equal(rows.ident, torch.cat([identity(first), identity(second)]))
    assert torch.equal(changed.ident, torch.cat([identity(first), identity(replaced)]))
    assert torch.equal(changed.hashes, hash_rows(changed.ident))


def test_after_a_drop_the_next_question_identifies_only_its_retained_rows(monkeypatch):
    adapter = tiny_adapter("qwen3_vl")
    selector = tiny_selector(adapter)
    tokens = paired(selector, adapter, 12)
    prompt = adapter.prompt(QUESTION)
    stream = SelectorCaches(selector, prompt.prefix_ids, max_group_tokens=16, max_group_frames=64)
    stream.ingest("cam", tokens)
    retained = evicted(tokens, 6, seed=5)
    first = stream.scores("cam", retained, prompt)
    assert stream.stats["cam"].dropped == 6
    computed: list[int] = []

    def counted(rows: PairedTokens) -> torch.Tensor:
        computed.append(len(rows))
        return identity(rows)

    monkeypatch.setattr(row_match, "identity", counted)
    again = stream.scores("cam", retained, prompt)
    assert computed == [len(retained)] and stream.stats["cam"].in_step == 1
    assert torch.equal(again, first)


def test_the_rows_kept_after_a_drop_equal_the_identities_of_the_groups_left():
    first, second = encoded("internvl", frames=4), encoded("internvl", frames=6)
    index = RowIndex()
    rows = index.rows([first, second])
    gone = torch.zeros(len(rows.ident), dtype=torch.bool)
    gone[torch.tensor([0, 3, len(first) + 1])] = True
    keep_first = torch.tensor([i for i in range(len(first)) if i not in (0, 3)])
    keep_second = torch.tensor([i for i in range(len(second)) if i != 1])
    after = [first.select(keep_first), second.select(keep_second)]
    index.after_drop(after, rows, gone)
    kept = index.rows(after)
    assert torch.equal(kept.ident, torch.cat([identity(p) for p in after]))
    assert torch.equal(kept.hashes, hash_rows(kept.ident))


def test_parts_that_do_not_hold_the_kept_rows_are_refused():
    tokens = encoded("qwen2_5_vl", frames=4)
    index = RowIndex()
    rows = index.rows([tokens])
    gone = torch.zeros(len(tokens), dtype=torch.bool)
    gone[0] = True
    with pytest.raises(ValueError, match="rows after the drop"):
        index.after_drop([tokens], rows, gone)
