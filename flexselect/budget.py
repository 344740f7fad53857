"""Long videos: frame groups that fit the scorer, and scores to kept indices under a token budget."""

from __future__ import annotations

import itertools
from typing import Protocol

import torch

from flexselect.config import BudgetMode, BudgetRounding, Grouping, SelectionConfig
from flexselect.types import Prompt, Selection, VisualTokens


class Scorer(Protocol):
    """Anything that scores every token of a group of visual tokens for a prompt."""

    name: str

    def score(self, prompt: Prompt, tokens: VisualTokens) -> torch.Tensor: ...


def frame_groups(
    tokens: VisualTokens,
    *,
    grouping: Grouping,
    max_frames: int,
    max_tokens: int,
) -> list[torch.Tensor]:
    """Token indices of each scoring group; whole frames only, each group at most `max_tokens` long.

    Contiguous groups are consecutive frames (what streaming needs); interleaved groups take every G-th
    frame so each group spans the whole video (the paper). The group count grows until both the frame
    cap and the token cap hold.
    """
    frames, inverse = torch.unique(tokens.frame, return_inverse=True)  # frame id -> ordinal
    per_frame = torch.bincount(inverse, minlength=len(frames))
    if int(per_frame.max()) > max_tokens:
        raise ValueError(
            f"one frame has {int(per_frame.max())} tokens but a scoring group holds at most {max_tokens}"
        )
    n = len(frames)
    count = max(1, -(-n // max_frames))
    while True:
        if grouping == "interleaved":
            members = [torch.arange(g, n, count) for g in range(count)]
        else:
            bounds = torch.linspace(0, n, count + 1).round().long()
            members = [torch.arange(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        if all(int(per_frame[m].sum()) <= max_tokens for m in members) or count >= n:
            break
        count += 1
    groups = []
    for m in members:
        in_group = torch.zeros(n, dtype=torch.bool)
        in_group[m] = True
        groups.append(torch.nonzero(in_group[inverse]).flatten())
    return [g for g in groups if len(g)]


def selection_pays(retained: int, budget: int, *, layer: int, depth: int) -> bool:
    """Whether reference selection can beat a full prefill of `retained` tokens.

    Selection prefills every token through layers 0..`layer` of `depth`, then prefills the `budget` kept
    tokens through the whole model; a full prefill runs every token through all layers. With prefill cost
    linear in tokens that pays when retained * (1 - (layer + 1) / depth) > budget (attention's quadratic
    part only favours selection more, so this errs towards full prefill). Qwen2.5-VL-7B (layer 19 of 28)
    with a 7,040 budget: selection pays from about 24,600 retained tokens.
    """
    return retained * (1.0 - (layer + 1) / depth) > budget


def rounded_budget(budget: int, tokens: VisualTokens, rounding: BudgetRounding) -> int:
    """The budget selection aims for: `budget` itself ("exact"), or rounded up to whole frames of these
    tokens ("frames", as the authors' Qwen2.5-VL code rounds to a multiple of tokens per frame)."""
    if rounding == "exact" or len(tokens) == 0:
        return budget
    per_frame = -(-len(tokens) // len(torch.unique(tokens.frame)))  # frames hold equal counts; ceil if not
    return -(-budget // per_frame) * per_frame


def top_k(
    scores: torch.Tensor,
    groups: list[torch.Tensor],
    budget: int,
    mode: BudgetMode,
    *,
    remainder: bool = True,
) -> torch.Tensor:
    """Indices of the kept tokens, ascending (original order).

    `global` keeps the `budget` best scores overall; `per_group` gives every group an equal share
    (`budget // groups`, as the paper does; with `remainder` the rest goes to the first groups, without it
    it is dropped as in the authors' code). A group smaller than its share keeps all its tokens.
    """
    if budget >= len(scores):
        return torch.arange(len(scores))
    if mode == "global":
        return torch.topk(scores, budget).indices.sort().values
    share, extra = divmod(budget, len(groups))
    extra = extra if remainder else 0
    kept = []
    for i, g in enumerate(groups):
        k = min(len(g), share + (1 if i < extra else 0))
        kept.append(g[torch.topk(scores[g], k).indices])
    return torch.cat(kept).sort().values


def select(
    scorer: Scorer,
    prompt: Prompt,
    tokens: VisualTokens,
    config: SelectionConfig,
    *,
    max_group_tokens: int,
) -> Selection:
    """Score `tokens` group by group and keep `config.budget` of them in original order.

    The prompt (with the whole question) is part of every group; groups are sized so that prefix,
    group and question together stay within `max_group_tokens + len(prompt)`.
    """
    groups = frame_groups(
        tokens, grouping=config.grouping, max_frames=config.max_frames_per_group, max_tokens=max_group_tokens
    )
    scores = torch.empty(len(tokens), dtype=torch.float32)
    for g in groups:
        scores[g] = scorer.score(prompt, tokens.select(g)).float().cpu()
    budget = rounded_budget(config.budget, tokens, config.budget_rounding)
    exact = config.budget_rounding == "exact"
    index = top_k(scores, groups, budget, config.budget_mode, remainder=exact)
    per_group = budget // len(groups) if config.budget_mode == "per_group" and groups else None
    return Selection(index=index, scores=scores, groups=groups, budget=budget, per_group=per_group)
