"""Reference-layer calibration: per-layer question->visual attention and how much of it finds a needle.

The paper picks the reference layer with a needle-in-a-haystack sweep: for each layer, the fraction of the
top-K attended visual tokens (K = one frame's tokens) that lie on the needle frame. This works for any
adapter; the scoring recipe is `flexselect.ranking`'s, and all layers are captured in one partial pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flexselect.adapters.base import LayerInput, VideoLLMAdapter
from flexselect.config import Aggregation
from flexselect.ranking import aggregate, question_attention
from flexselect.types import Prompt, VisualTokens


def layer_inputs(adapter: VideoLLMAdapter, prompt: Prompt, tokens: VisualTokens) -> list[LayerInput]:
    """What enters every decoder layer's attention, from one pass over `[prefix | tokens | suffix]`.

    Hooks on every attention module record their inputs while the adapter runs up to the last layer.
    """
    seq = adapter.build_sequence(prompt, tokens, compact=True)  # as ReferenceScorer scores a group
    box: dict[int, LayerInput] = {}
    handles = []
    for layer in range(adapter.num_layers - 1):

        def hook(
            module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], layer: int = layer
        ) -> None:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            cos, sin = kwargs["position_embeddings"]
            box[layer] = LayerInput(hidden=hidden, cos=cos, sin=sin)

        handles.append(adapter.attention_module(layer).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        box[adapter.num_layers - 1] = adapter.capture_layer_input(seq, adapter.num_layers - 1)
    finally:
        for handle in handles:
            handle.remove()
    return [box[layer] for layer in range(adapter.num_layers)]


def layer_scores(
    adapter: VideoLLMAdapter, prompt: Prompt, tokens: VisualTokens, *, aggregation: Aggregation = "max"
) -> torch.Tensor:
    """(layers, V) float32 score of every visual token at every layer, as `ReferenceScorer` computes it."""
    inputs = layer_inputs(adapter, prompt, tokens)
    p, t, v = len(prompt.prefix_ids), prompt.query_len, len(tokens)
    query_rows = torch.arange(p + v, p + v + t, device=adapter.device)
    rows = []
    with torch.no_grad():
        for layer, layer_input in enumerate(inputs):
            probs = question_attention(
                adapter.attention_module(layer), layer_input, query_rows, adapter.rope_module(layer)
            )  # (heads, T, S)
            rows.append(aggregate(probs[:, :, p : p + v], aggregation).float().cpu())
    return torch.stack(rows)


def frame_spans(tokens: VisualTokens, frame_count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, last) sampled-frame index each token covers: its frame up to the next token frame - 1."""
    frames = torch.unique(tokens.frame)
    ends = torch.cat([frames[1:] - 1, torch.tensor([frame_count - 1])])
    index = torch.searchsorted(frames, tokens.frame)
    return tokens.frame, ends[index]


def needle_token_mask(tokens: VisualTokens, needle_frames: torch.Tensor, frame_count: int) -> torch.Tensor:
    """(V,) bool: tokens of a frame (or temporal patch) that holds any of `needle_frames`."""
    first, last = frame_spans(tokens, frame_count)
    f = needle_frames.view(1, -1)
    return ((first.view(-1, 1) <= f) & (f <= last.view(-1, 1))).any(dim=1)


def box_token_mask(
    tokens: VisualTokens,
    frame_count: int,
    needles: list[tuple[torch.Tensor, tuple[int, int, int, int]]],
    size: tuple[int, int],
) -> torch.Tensor:
    """(V,) bool: patch tokens whose cell overlaps a needle's box in a frame that shows it.

    Args:
        tokens: the encoded span.
        frame_count: sampled frames.
        needles: per needle, the sampled frame indices that show it and its (x, y, w, h) box in pixels.
        size: (width, height) of the frames the boxes refer to.
    """
    first, last = frame_spans(tokens, frame_count)
    row, col = tokens.grid[:, 1], tokens.grid[:, 2]
    rows, cols = int(row.max()) + 1, int(col.max()) + 1
    width, height = size
    mask = torch.zeros(len(tokens), dtype=torch.bool)
    for frames, (x, y, w, h) in needles:
        f = frames.view(1, -1)
        shown = ((first.view(-1, 1) <= f) & (f <= last.view(-1, 1))).any(dim=1)
        r0, r1 = y * rows // height, (y + h - 1) * rows // height
        c0, c1 = x * cols // width, (x + w - 1) * cols // width
        mask |= shown & (row >= r0) & (row <= r1) & (col >= c0) & (col <= c1)
    return mask


def tokens_per_frame_group(tokens: VisualTokens) -> int:
    """K: visual tokens of one frame (one temporal patch for Qwen), the paper's recall cut-off."""
    return round(len(tokens) / len(torch.unique(tokens.frame)))


@dataclass
class NeedleHits:
    """Per-layer needle metrics of one sample (each (layers,) float32)."""

    recall: torch.Tensor  # the paper's: fraction of the top-K tokens (K = a frame's) on the needle frames
    recall_needle: torch.Tensor  # fraction of the top-|needle| tokens that are needle tokens
    top1: torch.Tensor  # 1.0 when the best-scored token is a needle token
    mass: torch.Tensor  # share of the score that falls on needle tokens


def _top_fraction(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices  # (layers, K)
    return mask[top].float().mean(dim=1)


def needle_hits(scores: torch.Tensor, frames: torch.Tensor, needle: torch.Tensor, k: int) -> NeedleHits:
    """Needle metrics of (layers, V) `scores`.

    Args:
        scores: per-layer scores of every visual token.
        frames: (V,) bool tokens of the needle's frames (the paper's target: its needle fills a frame).
        needle: (V,) bool tokens that show the needle itself (equal to `frames` for a frame-filling one).
        k: one frame's tokens.
    """
    if not bool(needle.any()) or not bool(frames.any()):
        raise ValueError("the needle mask is empty: no visual token shows the needle")
    mass = (scores * needle).sum(dim=1) / scores.sum(dim=1).clamp_min(1e-12)
    return NeedleHits(
        recall=_top_fraction(scores, frames, k),
        recall_needle=_top_fraction(scores, needle, int(needle.sum())),
        top1=needle[scores.argmax(dim=1)].float(),
        mass=mass,
    )
