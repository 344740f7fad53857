"""Ingest-time scores: the redundancy term and the retention formula."""

from __future__ import annotations

import math

import pytest
import torch

from agent.memory.scoring import normalise_attention, redundancy, retention
from flexselect.types import TokenKind, VisualTokens


def frames(vectors: list[list[list[float]]], *, kinds: list[int] | None = None) -> VisualTokens:
    """One token per vector; frame f holds vectors[f], at grid rows 0..k-1 of column 0."""
    rows = [(f, r, v) for f, frame in enumerate(vectors) for r, v in enumerate(frame)]
    n = len(rows)
    kind = torch.tensor(kinds if kinds is not None else [TokenKind.PATCH] * n, dtype=torch.int8)
    return VisualTokens(
        embeds=torch.tensor([v for _, _, v in rows]),
        frame=torch.tensor([f for f, _, _ in rows]),
        time=torch.tensor([float(f) for f, _, _ in rows], dtype=torch.float64),
        grid=torch.tensor([[0, r, 0] for _, r, _ in rows]),
        kind=kind,
        token_id=torch.zeros(n, dtype=torch.int64),
    )


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def test_redundancy_ramps_from_the_threshold_to_identity() -> None:
    half = math.acos(0.95)  # cosine 0.95 is half-way between 0.9 and 1
    tokens = frames([[unit(0), unit(0), unit(0)], [unit(0), unit(half), unit(math.acos(0.5))]])
    red, _ = redundancy(tokens, None, threshold=0.9)
    assert red.tolist() == pytest.approx([0, 0, 0, 1, 0.5, 0], abs=1e-5)


def test_only_patches_at_the_same_place_are_compared() -> None:
    tokens = frames([[unit(0)], [unit(0), unit(0)]])
    red, _ = redundancy(tokens, None, threshold=0.9)
    assert red.tolist() == pytest.approx([0, 1, 0], abs=1e-5)  # row 1 has no counterpart in frame 0


def test_non_patch_tokens_are_never_redundant() -> None:
    tokens = frames([[unit(0)], [unit(0)]], kinds=[TokenKind.MARKER, TokenKind.MARKER])
    red, newest = redundancy(tokens, None, threshold=0.9)
    assert red.tolist() == [0.0, 0.0] and newest is None


def test_the_first_frame_is_compared_with_the_previous_chunk() -> None:
    _, previous = redundancy(frames([[unit(0)]]), None, threshold=0.9)
    nxt = frames([[unit(0)]])
    nxt.frame += 1
    red, newest = redundancy(nxt, previous, threshold=0.9)
    assert red.tolist() == pytest.approx([1.0], abs=1e-5) and newest is not None and newest.frame == 1


def test_retention_is_weighted_attention_minus_weighted_redundancy() -> None:
    score = retention(
        torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.5]), attention_weight=2.0, redundancy_weight=4.0,
        attention_norm="mean",
    )  # fmt: skip
    assert score.tolist() == [1.0, 1.0]  # 2 * 0.5 - 0, 2 * 1.5 - 4 * 0.5


def test_mean_normalisation_treats_all_zero_attention_as_uniform() -> None:
    assert normalise_attention(torch.zeros(3), "mean").tolist() == [1.0, 1.0, 1.0]
    assert normalise_attention(torch.tensor([2.0, 6.0]), "none").tolist() == [2.0, 6.0]
