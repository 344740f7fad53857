"""The needle-survival measure: the fraction of given tokens a memory still retains."""

from __future__ import annotations

import torch

from agent.memory import retained_fraction
from tests.memory.memory_helpers import make_tokens


def test_all_some_or_none_of_the_wanted_tokens() -> None:
    needle = make_tokens([5, 6])
    assert retained_fraction(make_tokens(range(10)), needle) == 1.0
    assert retained_fraction(make_tokens([0, 5, 9]), needle) == 0.5
    assert retained_fraction(make_tokens([0, 1]), needle) == 0.0


def test_tokens_are_matched_by_place_not_by_embedding() -> None:
    needle = make_tokens([5])
    kept = make_tokens([5], seed=99)  # same frame and grid, other embeddings
    assert retained_fraction(kept, needle) == 1.0
    assert retained_fraction(kept.select(torch.tensor([0, 3])), needle) == 0.5


def test_repeated_tokens_count_once_per_copy() -> None:
    needle = make_tokens([2], rows=1, cols=1, newline=True)
    doubled = needle.concat([needle, needle.select(torch.tensor([1]))])  # one patch, two newlines
    assert retained_fraction(needle, doubled) == 2 / 3


def test_an_empty_needle_counts_as_survived() -> None:
    nothing = make_tokens([0]).select(torch.tensor([], dtype=torch.int64))
    assert retained_fraction(nothing, nothing) == 1.0
