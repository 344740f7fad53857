"""The learning-rate schedule: linear warm-up, then cosine decay to a floor (a pure function of the step)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """The learning rate of `step`: linear warm-up to `lr` over `warmup` steps, cosine to `min_lr` at `total`.

    A pure function of the step, so a resumed run sets exactly the rates an uninterrupted one would.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def warmup_steps(fraction: float, total: int) -> int:
    """Warm-up steps for a warm-up given as a fraction of `total` steps (at least one)."""
    return max(1, round(fraction * total))
