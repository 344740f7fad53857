"""A tiny real training task for the toolkit's tests: linear regression with a training-only head."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from flexselect.training.checkpoint import MODEL_FILE
from flexselect.training.loop import LoopConfig

LOOP = LoopConfig(
    steps=6, lr=1e-2, min_lr=1e-3, warmup=2, weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0,
    eval_every=2, save_every=2,
)  # fmt: skip


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


class Regression:
    """Fits y = x . w to seeded data; `head` is a training-only module with its own small loss."""

    def __init__(self, seed: int = 0, micro_batches: int = 2) -> None:
        self.model = make_model(seed)
        self.extras: dict[str, nn.Module] = {"head": nn.Linear(8, 1)}
        self.micro_batches = micro_batches
        self.seen: list[int] = []  # the steps whose batches were asked for

    def batches(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self.seen.append(step)
        out = []
        for i in range(self.micro_batches):
            g = torch.Generator().manual_seed(1000 * step + i)
            x = torch.randn(16, 4, generator=g)
            out.append((x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])))
        return out

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        hidden = self.model[1](self.model[0](x))
        main = nn.functional.mse_loss(self.model[2](hidden), y)
        aux = nn.functional.mse_loss(self.extras["head"](hidden), y)
        return main + 0.1 * aux, {"train_loss": main.item(), "aux_loss": aux.item()}

    def evaluate(self, step: int) -> dict[str, float]:
        x, y = self.batches(10_000)[0]
        self.seen.pop()
        return {"heldout_mse": nn.functional.mse_loss(self.model(x), y).item()}

    def save_model(self, directory: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, directory / MODEL_FILE)

    def load_model(self, directory: Path) -> nn.Module:
        model = make_model()
        model.load_state_dict(load_file(directory / MODEL_FILE))
        return model
