"""Where the selector places visual tokens: the base family's own layout, computed on the scored group.

These mirror the adapters' `visual_positions(tokens, compact=True)` (a test pins them equal) so that the
selector needs no base model at scoring time. Each is prefix-stable: appending later frames to a group
never moves the tokens already in it, which is what lets the cache keep keys computed at ingest.
"""

from __future__ import annotations

import itertools

import torch

from flexselect.types import TokenKind, VisualTokens


def visual_offsets(
    family: str, tokens: VisualTokens, *, tokens_per_second: float
) -> tuple[torch.Tensor, int]:
    """Position offsets of `tokens` from the span start and the span's extent (where text resumes).

    Returns:
        (offsets, extent): offsets (3, N) int64 for M-RoPE families or (1, N), and the offset of the
        first text position after the span.
    """
    if family == "qwen2_5_vl":
        return _qwen2_5_vl(tokens, tokens_per_second)
    if family == "qwen3_vl":
        return _qwen3_vl(tokens)
    if family in ("llava_onevision", "internvl"):
        return torch.arange(len(tokens)).view(1, -1), len(tokens)
    raise ValueError(f"no position layout for family {family!r}")


def _qwen2_5_vl(tokens: VisualTokens, tokens_per_second: float) -> tuple[torch.Tensor, int]:
    """Compact Qwen2.5-VL M-RoPE: time steps renumbered in order, scaled by seconds per step."""
    step = torch.unique(tokens.grid[:, 0], return_inverse=True)[1]
    interval = float(tokens_per_second) * torch.tensor(tokens.seconds_per_step, dtype=torch.float32)
    temporal = (step * interval).long()
    offsets = torch.stack([temporal, tokens.grid[:, 1], tokens.grid[:, 2]])
    return offsets, int(offsets.max()) + 1


def _qwen3_vl(tokens: VisualTokens) -> tuple[torch.Tensor, int]:
    """Qwen3-VL: text-like markers advance by one; each run of patches is an image at the current position."""
    is_patch = tokens.kind == TokenKind.PATCH
    offsets = torch.empty(3, len(tokens), dtype=torch.long)
    current = 0
    for start, end, patch in _runs(is_patch):
        if not patch:
            offsets[:, start:end] = torch.arange(current, current + end - start)
            current += end - start
            continue
        rows, cols = tokens.grid[start:end, 1], tokens.grid[start:end, 2]
        offsets[0, start:end] = current
        offsets[1, start:end] = current + rows
        offsets[2, start:end] = current + cols
        current += int(max(rows.max(), cols.max())) + 1
    return offsets, current


def _runs(mask: torch.Tensor) -> list[tuple[int, int, bool]]:
    """(start, end, value) of each maximal run of equal values in a 1-D bool tensor."""
    if len(mask) == 0:
        return []
    change = torch.nonzero(mask[1:] != mask[:-1]).flatten() + 1
    bounds = [0, *change.tolist(), len(mask)]
    return [(a, b, bool(mask[a])) for a, b in itertools.pairwise(bounds)]


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
