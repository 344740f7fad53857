"""Where the selector places visual tokens: the base family's own layout, computed on the scored group.

These are the adapters' own layout functions, as `visual_positions(tokens, compact=True)` uses them (a
test pins them equal), called without a base model so that the selector needs none at scoring time. Each
is prefix-stable: appending later frames to a group never moves the tokens already in it, which is what
lets the cache keep keys computed at ingest.
"""

from __future__ import annotations

import torch

from flexselect.adapters.qwen2_5_vl import qwen2_5_vl_offsets
from flexselect.adapters.qwen3_vl import qwen3_vl_offsets
from flexselect.types import VisualTokens


def visual_offsets(
    family: str, tokens: VisualTokens, *, tokens_per_second: float
) -> tuple[torch.Tensor, int]:
    """Position offsets of `tokens` from the span start and the span's extent (where text resumes).

    Returns:
        (offsets, extent): offsets (3, N) int64 for M-RoPE families or (1, N), and the offset of the
        first text position after the span.
    """
    if family == "qwen2_5_vl":
        return qwen2_5_vl_offsets(tokens, tokens_per_second, compact=True)
    if family == "qwen3_vl":
        return qwen3_vl_offsets(tokens)
    if family in ("llava_onevision", "internvl"):
        return torch.arange(len(tokens)).view(1, -1), len(tokens)
    raise ValueError(f"no position layout for family {family!r}")


def sequence_positions(
    prefix_len: int, offsets: torch.Tensor, extent: int, query_len: int, *, mrope: bool
) -> torch.Tensor:
    """Positions of `[prefix | visual | question]`: (3, 1, S) for M-RoPE or (1, S)."""
    rows = offsets.shape[0]
    prefix = torch.arange(prefix_len).view(1, -1).expand(rows, -1)
    suffix = (prefix_len + extent + torch.arange(query_len)).view(1, -1).expand(rows, -1)
    return as_position_ids(torch.cat([prefix, prefix_len + offsets, suffix], dim=1), mrope=mrope)


def as_position_ids(positions: torch.Tensor, *, mrope: bool) -> torch.Tensor:
    """(rows, S) positions as the decoder takes them: (3, 1, S) for M-RoPE (one row repeated), else (1, S)."""
    if mrope:
        return positions.expand(3, -1)[:, None] if positions.shape[0] == 1 else positions[:, None]
    return positions[:1]
