"""Tensors that cross the model boundary: visual tokens with metadata, prompts, scores and selections.

Devices, one rule for the whole project: a tensor is made on the device where it is used (a model's
inputs on the model's device, moved there by the code that calls the model: `x.to(model.device)`, or
`torch.arange(..., device=...)`), and metadata stays on the CPU by design: the frame, time, grid, kind
and token-id fields of `VisualTokens`, prompt ids, position layouts before they enter a model, group and
keep indices. Embeddings may live anywhere (the memory stores CPU copies); scores are read back to the
host once, at the boundary (after top-k), never inside a model path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import torch


class TokenKind(IntEnum):
    """What a token inside the visual span is; every kind competes for the budget."""

    PATCH = 0  # a projected vision feature (fills a placeholder token)
    NEWLINE = 1  # a learned newline embedding (LLaVA-OneVision's image_newline)
    MARKER = 2  # a text token inside the visual span (<img>, </img>, timestamps, frame labels)


@dataclass
class VisualTokens:
    """The visual span of a video in the LLM's input space, one row per token, in sequence order.

    Attributes:
        embeds: (N, D) input embeddings of the span (projected features, newline and marker embeddings).
        frame: (N,) int64 index of the sampled frame a token belongs to (first frame of a temporal patch).
        time: (N,) float64 timestamp of that frame in seconds (media time or Unix time for live sources).
        grid: (N, 3) int64 (temporal step, row, column) of a patch in merged-token units; -1 for non-patches.
        kind: (N,) int8 `TokenKind`.
        token_id: (N,) int64 input id of the token (the placeholder id for patches and newlines).
        deepstack: (n_levels, N, D) Qwen3-VL deepstack features (zeros for non-patch rows), else None.
        seconds_per_step: seconds of video per temporal step (Qwen: temporal_patch_size / sampled fps).
    """

    embeds: torch.Tensor
    frame: torch.Tensor
    time: torch.Tensor
    grid: torch.Tensor
    kind: torch.Tensor
    token_id: torch.Tensor
    deepstack: torch.Tensor | None = None
    seconds_per_step: float = 1.0

    def __post_init__(self) -> None:
        n = self.embeds.shape[0]
        for name in ("frame", "time", "kind", "token_id"):
            if getattr(self, name).shape != (n,):
                raise ValueError(
                    f"VisualTokens.{name} has shape {tuple(getattr(self, name).shape)}, expected ({n},)"
                )
        if self.grid.shape != (n, 3):
            raise ValueError(f"VisualTokens.grid has shape {tuple(self.grid.shape)}, expected ({n}, 3)")
        if self.deepstack is not None and self.deepstack.shape[1:] != self.embeds.shape:
            raise ValueError(
                f"VisualTokens.deepstack has shape {tuple(self.deepstack.shape)}, expected (L, {n}, "
                f"{self.embeds.shape[1]})"
            )

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def select(self, index: torch.Tensor) -> VisualTokens:
        """Rows `index` (a 1-D index or boolean mask), keeping every field aligned."""
        return VisualTokens(
            embeds=self.embeds[index],
            frame=self.frame[index],
            time=self.time[index],
            grid=self.grid[index],
            kind=self.kind[index],
            token_id=self.token_id[index],
            deepstack=None if self.deepstack is None else self.deepstack[:, index],
            seconds_per_step=self.seconds_per_step,
        )

    @staticmethod
    def concat(parts: list[VisualTokens]) -> VisualTokens:
        """Concatenate spans in order (e.g. consecutive chunks of one stream)."""
        if not parts:
            raise ValueError("VisualTokens.concat needs at least one part")
        ds = [p.deepstack for p in parts]
        if any(d is None for d in ds) and not all(d is None for d in ds):
            raise ValueError("cannot concatenate VisualTokens with and without deepstack features")
        return VisualTokens(
            embeds=torch.cat([p.embeds for p in parts]),
            frame=torch.cat([p.frame for p in parts]),
            time=torch.cat([p.time for p in parts]),
            grid=torch.cat([p.grid for p in parts]),
            kind=torch.cat([p.kind for p in parts]),
            token_id=torch.cat([p.token_id for p in parts]),
            deepstack=None if ds[0] is None else torch.cat(ds, dim=1),  # type: ignore[arg-type]
            seconds_per_step=parts[0].seconds_per_step,
        )

    def frame_ids(self) -> torch.Tensor:
        """Sorted distinct frame indices present in the span."""
        return torch.unique(self.frame)


@dataclass
class Prompt:
    """Token ids around the visual span: `[prefix | visual | suffix]`; the suffix holds the question."""

    prefix_ids: torch.Tensor  # (P,) int64: system prompt, user header, vision start
    suffix_ids: torch.Tensor  # (T,) int64: vision end, question, end of turn, assistant header

    @property
    def query_len(self) -> int:
        return int(self.suffix_ids.shape[0])


@dataclass
class Sequence:
    """A model-ready sequence (batch of one) with explicit positions and mask."""

    inputs_embeds: torch.Tensor  # (1, S, D)
    position_ids: torch.Tensor  # (3, 1, S) for M-RoPE models, (1, S) otherwise
    attention_mask: torch.Tensor  # (1, S) int64 ones
    visual_slice: slice  # where the visual span lies in S
    visual_mask: torch.Tensor  # (1, S) bool: rows holding vision features (deepstack targets)
    deepstack: torch.Tensor | None = None  # (n_levels, n_visual_features, D)

    @property
    def length(self) -> int:
        return int(self.inputs_embeds.shape[1])


@dataclass
class Selection:
    """Which visual tokens were kept and why."""

    index: torch.Tensor  # (K,) int64 indices into the scored VisualTokens, ascending (original order)
    scores: torch.Tensor  # (N,) float32 score of every scored token
    groups: list[torch.Tensor] = field(default_factory=list)  # token indices of each scored group
    budget: int | None = None  # the budget selection aimed for (after rounding to whole frames, if any)
    per_group: int | None = None  # each group's share of it with a per-group budget, else None


@dataclass
class Answer:
    """A generated answer with what it was conditioned on."""

    text: str
    token_ids: list[int]
    kept_tokens: int
    total_tokens: int
    first_token_logits: torch.Tensor | None = None  # (vocab,) logits that produced the first token
    timings_ms: dict[str, float] = field(default_factory=dict)  # prefill (to first token), generate
