"""Positions of retained tokens over long spans: exact where they fit the trained range, else compressed.

A stream's memory keeps tokens from hours or days of video. Their original positions (Qwen2.5-VL: two
temporal positions per second of video) run past what the model was trained on after about a day for
Qwen2.5-VL-7B (128,000 positions), and after minutes for a small model trained on short clips. The policy:

1. The kept tokens keep their original positions (gathered from the whole span) when prompt, whole span
   and question fit `trained_positions`: nothing changes for a video the model was trained to read.
2. Otherwise the kept tokens' distinct positions stay in order and every gap between consecutive ones is
   capped at the largest cap `c` for which the span fits: gaps shorter than `c` (the spacing inside a
   burst of kept frames, a scene, a needle event) stay exact, longer gaps (the hours between events)
   become `c`. The spatial rows of M-RoPE are untouched.
3. If even `c = 1` (every distinct position one apart) does not fit, the kept tokens are more than the
   range holds: an error, not a silent truncation.

Only the answer sequence uses it; scoring groups are renumbered compactly as before.
"""

from __future__ import annotations

import torch


def capped_gaps(offsets: torch.Tensor, room: int, *, rows_follow: bool = False) -> tuple[torch.Tensor, int]:
    """`offsets` (R, N) of kept tokens re-laid so that their extent is at most `room` (rule 2 above).

    Row 0 is the one gaps are read from (time for M-RoPE, the only row for 1-D RoPE). The other rows keep
    their values (Qwen2.5-VL: height and width from the span start) or, with `rows_follow`, move by the
    same amount as row 0 (Qwen3-VL, where each frame's height and width start at its own position).
    Returns the new offsets (row 0 starting at 0) and their extent (max + 1, where the text resumes).

    Raises:
        ValueError: the kept tokens' distinct positions alone exceed `room`.
    """
    if offsets.shape[1] == 0:
        return offsets, 0
    values, inverse = torch.unique(offsets[0], return_inverse=True)
    gaps = values.diff()

    def laid(cap: int) -> torch.Tensor:
        out = offsets.clone()
        out[0] = torch.cat([values.new_zeros(1), torch.cumsum(gaps.clamp(max=cap), 0)])[inverse]
        if rows_follow:
            out[1:] += out[0] - offsets[0]
        return out

    def extent(cap: int) -> int:
        return int(laid(cap).max()) + 1

    high = int(gaps.max()) if len(gaps) else 1
    if extent(high) <= room:
        cap = high
    elif extent(1) > room:
        raise ValueError(
            f"{len(values)} distinct positions of kept tokens exceed the model's trained range ({room} "
            "positions for the visual span); lower the budget"
        )
    else:
        low = 1  # extent(low) fits, extent(high) does not: the largest fitting cap lies in [low, high)
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if extent(mid) <= room else (low, mid)
        cap = low
    return laid(cap), extent(cap)
