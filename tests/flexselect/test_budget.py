"""Frame groups and budgets: whole frames per group, kept indices in original order."""

from __future__ import annotations

import pytest
import torch

from flexselect.budget import frame_groups, rounded_budget, select, top_k
from flexselect.config import SelectionConfig
from flexselect.types import TokenKind, VisualTokens


def tokens_of(frames: int, per_frame: int) -> VisualTokens:
    n = frames * per_frame
    frame = torch.arange(frames).repeat_interleave(per_frame)
    return VisualTokens(
        embeds=torch.zeros(n, 4),
        frame=frame,
        time=frame.double(),
        grid=torch.zeros(n, 3, dtype=torch.long),
        kind=torch.full((n,), int(TokenKind.PATCH), dtype=torch.int8),
        token_id=torch.zeros(n, dtype=torch.long),
    )


def frames_of(tokens: VisualTokens, group: torch.Tensor) -> list[int]:
    return torch.unique(tokens.frame[group]).tolist()


def test_contiguous_groups_are_consecutive_frames():
    tokens = tokens_of(8, 3)
    groups = frame_groups(tokens, grouping="contiguous", max_frames=4, max_tokens=100)
    assert [frames_of(tokens, g) for g in groups] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_interleaved_groups_stride_over_the_whole_video():
    tokens = tokens_of(8, 3)
    groups = frame_groups(tokens, grouping="interleaved", max_frames=4, max_tokens=100)
    assert [frames_of(tokens, g) for g in groups] == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_groups_shrink_until_they_fit_the_token_cap():
    tokens = tokens_of(8, 3)
    groups = frame_groups(tokens, grouping="contiguous", max_frames=8, max_tokens=7)
    assert all(len(g) <= 7 for g in groups)
    assert torch.equal(torch.cat(groups).sort().values, torch.arange(24))


def test_a_frame_larger_than_a_group_is_an_error():
    with pytest.raises(ValueError, match="one frame has 5 tokens but a scoring group holds at most 4"):
        frame_groups(tokens_of(2, 5), grouping="contiguous", max_frames=2, max_tokens=4)


def test_global_top_k_keeps_the_best_scores_in_original_order():
    scores = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2, 0.7])
    kept = top_k(scores, [torch.arange(3), torch.arange(3, 6)], 3, "global")
    assert kept.tolist() == [1, 3, 5]


def test_per_group_budget_gives_each_group_an_equal_share():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    kept = top_k(scores, [torch.arange(3), torch.arange(3, 6)], 4, "per_group")
    assert kept.tolist() == [0, 1, 4, 5]


def test_the_authors_rounding_takes_whole_frames_and_the_floor_share_per_group():
    tokens = tokens_of(8, 3)
    assert rounded_budget(7, tokens, "frames") == 9  # up to three whole frames of 3 tokens
    assert rounded_budget(7, tokens, "exact") == 7
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.0, 0.5])
    groups = [torch.arange(3), torch.arange(3, 7), torch.tensor([7])]
    kept = top_k(scores, groups, 7, "per_group", remainder=False)
    assert kept.tolist() == [0, 1, 4, 5, 7]  # floor(7 / 3) = 2 each; the 1-token group keeps its one


class ByIndex:
    name = "by-index"

    def score(self, prompt, tokens):
        return tokens.frame.float()


def test_the_paper_selection_reports_the_budget_it_used():
    config = SelectionConfig.styled("paper", budget=7, max_frames_per_group=4)
    assert (config.grouping, config.budget_mode, config.budget_rounding) == (
        "interleaved",
        "per_group",
        "frames",
    )
    selection = select(ByIndex(), None, tokens_of(8, 3), config, max_group_tokens=100)  # type: ignore[arg-type]
    assert (selection.budget, selection.per_group, len(selection.groups)) == (9, 4, 2)
    assert len(selection.index) == 8  # 2 groups x floor(9 / 2) = 4: the authors drop the remainder
    stream = select(
        ByIndex(), None, tokens_of(8, 3), SelectionConfig.styled("stream", budget=7), max_group_tokens=100
    )  # type: ignore[arg-type]
    assert (stream.budget, stream.per_group, len(stream.index)) == (7, None, 7)


def test_a_budget_covering_everything_keeps_everything():
    assert top_k(torch.rand(5), [torch.arange(5)], 9, "global").tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 0}, "budget must be at least 1 token, got 0"),
        ({"aggregation": "median"}, "aggregation must be 'max' or 'mean'"),
        ({"max_frames_per_group": 0}, "max_frames_per_group must be >= 1"),
        ({"layer": -1}, "layer must be >= 0"),
    ],
)
def test_bad_selection_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelectionConfig(**kwargs)
