"""Ingest-time retention scores: normalised standing-prompt attention minus a redundancy penalty.

    a~_i = a_i / mean(a)                  (attention_norm="mean"; a_i as given for "none")
    s_i  = cos(e_i, e_prev(row_i, col_i)) (patch tokens with a patch at the same place in the previous frame)
    p_i  = clip((s_i - tau) / (1 - tau), 0, 1), else 0
    r_i  = w_a * a~_i - w_r * p_i

`tau` is `similarity_threshold`, `w_a`/`w_r` are `attention_weight`/`redundancy_weight`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flexselect.types import TokenKind, VisualTokens

_COL_SPAN = 1 << 24  # place key = row * _COL_SPAN + col; grids are far smaller


@dataclass(frozen=True)
class FrameRef:
    """The patch tokens of a stream's newest frame, kept for the next chunk's redundancy term.

    Attributes:
        frame: the frame index.
        keys: (M,) int64 sorted place keys `row * 2**24 + col`.
        embeds: (M, D) float32 embeddings in `keys` order.
        norms: (M,) float32 their L2 norms.
    """

    frame: int
    keys: torch.Tensor
    embeds: torch.Tensor
    norms: torch.Tensor


def _cosine(ref: FrameRef, keys: torch.Tensor, embeds: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each row to the same place in `ref`; NaN where `ref` has no such place."""
    if torch.equal(keys, ref.keys):  # the usual case: the same grid as the previous frame
        other, other_norms, found = ref.embeds, ref.norms, None
    else:
        pos = torch.searchsorted(ref.keys, keys).clamp_(max=ref.keys.numel() - 1)
        other, other_norms, found = ref.embeds[pos], ref.norms[pos], ref.keys[pos] == keys
    dot = torch.linalg.vecdot(embeds, other)  # (P,)
    sim = dot / (norms * other_norms).clamp_min(1e-12)
    return sim if found is None else torch.where(found, sim, torch.full_like(sim, float("nan")))


def redundancy(
    tokens: VisualTokens, previous: FrameRef | None, *, threshold: float
) -> tuple[torch.Tensor, FrameRef | None]:
    """Redundancy of each token of a chunk, and the chunk's newest frame for the next call.

    Frames are visited in ascending frame index; each is compared with the frame before it, the first with
    `previous` (the stream's newest frame before this chunk). Non-patch tokens and patches with no patch at
    the same (row, col) in the previous frame get 0.

    Returns:
        (N,) float32 redundancy in [0, 1], and the `FrameRef` of the chunk's newest patch frame (or
        `previous` when the chunk has no patches).
    """
    out = torch.zeros(len(tokens), dtype=torch.float32)
    rows = torch.nonzero(tokens.kind == TokenKind.PATCH).squeeze(1)
    if rows.numel() == 0:
        return out, previous
    keys = tokens.grid[rows, 1] * _COL_SPAN + tokens.grid[rows, 2]
    order = torch.argsort(keys, stable=True)
    order = order[torch.argsort(tokens.frame[rows][order], stable=True)]  # by (frame, place)
    rows, keys = rows[order], keys[order]
    frames = tokens.frame[rows]
    embeds = tokens.embeds[rows].to(torch.float32)  # (P, D), frames contiguous
    norms = torch.linalg.vector_norm(embeds, dim=-1)
    ref = previous
    start = 0
    for frame, count in zip(
        *(t.tolist() for t in torch.unique_consecutive(frames, return_counts=True)), strict=True
    ):
        part = slice(start, start + count)
        start += count
        if ref is not None and ref.frame != frame:
            sim = _cosine(ref, keys[part], embeds[part], norms[part])
            out[rows[part]] = torch.nan_to_num(
                ((sim - threshold) / (1.0 - threshold)).clamp_(0.0, 1.0), nan=0.0
            )
        ref = FrameRef(frame=int(frame), keys=keys[part], embeds=embeds[part], norms=norms[part])
    assert ref is not None
    newest = FrameRef(ref.frame, ref.keys.clone(), ref.embeds.clone(), ref.norms.clone())  # drop the chunk
    return out, newest


def newest_frame(tokens: VisualTokens) -> FrameRef | None:
    """The `FrameRef` of the newest patch frame among `tokens` (None without patches): seeds a restart."""
    patch = tokens.kind == TokenKind.PATCH
    if not bool(patch.any()):
        return None
    newest = int(tokens.frame[patch].max())
    return redundancy(tokens.select(patch & (tokens.frame == newest)), None, threshold=0.0)[1]


def normalise_attention(attention: torch.Tensor, mode: str) -> torch.Tensor:
    """Attention made comparable across chunks: divided by its mean ("mean"; all zeros -> 1) or as given."""
    if mode == "none":
        return attention
    mean = float(attention.mean())
    return torch.ones_like(attention) if mean <= 0.0 else attention / mean


def retention(
    attention: torch.Tensor,
    redundancy_term: torch.Tensor,
    *,
    attention_weight: float,
    redundancy_weight: float,
    attention_norm: str,
) -> torch.Tensor:
    """(N,) float32 retention score `w_a * norm(a) - w_r * p`; higher is kept longer."""
    norm = normalise_attention(attention.to(torch.float32), attention_norm)
    return (attention_weight * norm - redundancy_weight * redundancy_term).to(torch.float32)
