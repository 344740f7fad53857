"""The optimizer: AdamW with weight decay on weight matrices only (norms, biases and gains not decayed)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters of `module` in two groups: matrices (decayed), then everything else (not decayed).

    The order follows `module.parameters()`, so a saved optimizer state maps onto the same parameters.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def adamw(
    module: nn.Module, *, lr: float, betas: tuple[float, float], weight_decay: float
) -> torch.optim.AdamW:
    """AdamW over `param_groups(module, weight_decay)`, one parameter at a time (`foreach=False`)."""
    return torch.optim.AdamW(param_groups(module, weight_decay), lr=lr, betas=betas, foreach=False)
