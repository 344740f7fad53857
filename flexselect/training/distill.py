"""The selector's training: rank distillation from the reference layer's scores, on the shared loop.

This module supplies only what is the selector's own: its settings, its data order (a permutation keyed by
(seed, epoch)), its loss (soft Spearman and/or L1 against the teacher) and its held-out metrics (Spearman
and top-K recall), measured at the end of every epoch when the checkpoint (a loadable selector directory)
is written. Schedule, optimizer, checkpointing and resuming are `flexselect.training.loop`'s.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flexselect.lite.model import LiteSelector
from flexselect.training.checkpoint import config_to_json
from flexselect.training.data import TeacherSample
from flexselect.training.loop import LoopConfig, run
from flexselect.training.loss import l1_loss, spearman_loss
from flexselect.training.metrics import evaluate, selector_scores
from flexselect.training.schedule import warmup_steps


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the paper: AdamW, lr 1e-5 with cosine decay and 3 % warm-up, clip, bf16).

    Attributes:
        epochs: passes over the training samples.
        batch_size: samples (groups) per optimizer step, accumulated one at a time.
        lr, min_lr: peak learning rate after warm-up, and the end of the cosine decay.
        warmup: fraction of all steps spent warming up linearly.
        weight_decay, betas: AdamW settings (decay on matrices only).
        grad_clip: global gradient-norm clip.
        tau: soft-rank temperature, in standard deviations of the (log) student scores.
        spearman_weight, l1_weight: weights of the soft Spearman loss and of the L1 score loss.
        log_scores: rank the log of the student's scores (attention probabilities span decades).
        rank_block: rows per block of the soft-rank computation (memory ~ block x group size).
        train_projector: also train the selector's projector (the paper freezes it for Qwen2.5-VL).
        gradient_checkpointing: recompute decoder layers in backward (long groups on small GPUs).
        bf16: autocast to bfloat16 on CUDA (ignored on CPU).
        eval_k: K of the held-out top-K recall.
        seed: keys the data order (seed the model initialisation before building the selector).
        minutes: stop early (and checkpoint) after this much training time, across resumes.
    """

    epochs: int = 8
    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup: float = 0.03
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    tau: float = 0.1
    spearman_weight: float = 1.0
    l1_weight: float = 0.0
    log_scores: bool = True
    rank_block: int = 1024
    train_projector: bool = True
    gradient_checkpointing: bool = False
    bf16: bool = True
    eval_k: int = 16
    seed: int = 0
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_k < 1 or self.rank_block < 1:
            raise ValueError(f"epochs, batch_size, eval_k and rank_block must be positive: {self}")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got {self.min_lr} and {self.lr}")
        if not 0 <= self.warmup < 1 or self.tau <= 0:
            raise ValueError(f"need 0 <= warmup < 1 and tau > 0, got {self.warmup}, {self.tau}")
        if self.spearman_weight < 0 or self.l1_weight < 0 or self.spearman_weight + self.l1_weight == 0:
            raise ValueError(
                f"loss weights must be >= 0 and not both 0, got {self.spearman_weight}, {self.l1_weight}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return config_to_json(self)

    def loop(self, samples: int, stop_at: int | None = None) -> LoopConfig:
        """The loop's settings for `samples` training groups: one evaluation and checkpoint per epoch."""
        per_epoch = math.ceil(samples / self.batch_size)
        total = self.epochs * per_epoch
        return LoopConfig(
            steps=total,
            lr=self.lr,
            min_lr=self.min_lr,
            warmup=warmup_steps(self.warmup, total),
            weight_decay=self.weight_decay,
            betas=self.betas,
            grad_clip=self.grad_clip,
            eval_every=per_epoch,
            save_every=per_epoch,
            minutes=self.minutes,
            stop_at=stop_at,
            desc="selector",
        )


def rank_loss(scores: torch.Tensor, teacher: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The training loss of one group: weighted soft Spearman (on log scores) and L1 (on raw scores)."""
    loss = scores.new_zeros((), dtype=torch.float32)
    if config.spearman_weight:
        pred = scores.float().clamp_min(1e-30).log() if config.log_scores else scores
        loss = loss + config.spearman_weight * spearman_loss(
            pred, teacher.to(scores.device), tau=config.tau, block=config.rank_block
        )
    if config.l1_weight:
        loss = loss + config.l1_weight * l1_loss(scores, teacher.to(scores.device))
    return loss


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The sample order of one epoch (a pure function of seed and epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def train(
    selector: LiteSelector,
    *,
    config: TrainConfig,
    samples: Sequence[TeacherSample],
    heldout: Sequence[TeacherSample],
    out: Path,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
    on_save: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Train `selector` in place against the teacher scores of `samples`; checkpoint into `out`.

    Args:
        selector: a fresh selector (its weights are replaced when resuming).
        config: optimisation settings.
        samples: training groups; heldout: groups for the per-epoch metrics.
        out: checkpoint directory (a loadable selector directory at every save).
        resume: continue from the checkpoint in `out`.
        progress: show a progress bar.
        stop_at: end (with a checkpoint) after this many steps without changing the schedule.
        on_save: called after each checkpoint (e.g. to write a model card).

    Returns:
        The loop state: step, epoch, elapsed seconds, and one history record per evaluation.
    """
    if not samples:
        raise ValueError("no training samples")
    selector.projector.requires_grad_(config.train_projector)
    selector.gradient_checkpointing = config.gradient_checkpointing
    task = DistillTask(selector, config, samples, heldout)
    loop = config.loop(len(samples), stop_at)
    return run(
        task, loop, out=out, resume=resume, progress=progress, on_save=on_save, settings=config.to_dict()
    )


class DistillTask:
    """The selector's part of the loop: groups in a seeded order per epoch, the rank loss, held-out ranks."""

    def __init__(
        self,
        selector: LiteSelector,
        config: TrainConfig,
        samples: Sequence[TeacherSample],
        heldout: Sequence[TeacherSample],
    ) -> None:
        self.model = selector
        self.extras: dict[str, torch.nn.Module] = {}
        self.config = config
        self.samples, self.heldout = samples, heldout
        self.per_epoch = math.ceil(len(samples) / config.batch_size)
        bf16 = config.bf16 and selector.device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def batches(self, step: int) -> list[TeacherSample]:
        """The step's groups, from the epoch's seeded order (a micro-batch each: groups differ in length)."""
        epoch, index = divmod(step, self.per_epoch)
        order = epoch_order(self.config.seed, epoch, len(self.samples))
        size = self.config.batch_size
        return [self.samples[int(i)] for i in order[index * size : (index + 1) * size]]

    def loss(self, batch: TeacherSample) -> tuple[torch.Tensor, dict[str, float]]:
        """The rank loss of one group against its teacher scores."""
        with self.autocast:
            scores = selector_scores(self.model, batch)
        loss = rank_loss(scores, batch.teacher, self.config)
        return loss, {"train_loss": float(loss.detach())}

    def evaluate(self, step: int) -> dict[str, float]:
        """The epoch reached, and held-out Spearman and top-K recall (none without held-out groups)."""
        record: dict[str, float] = {"epoch": round(step / self.per_epoch, 3)}
        if self.heldout:
            metrics = evaluate(self.model, self.heldout, k=self.config.eval_k)
            record.update(spearman=metrics.spearman, recall_at_k=metrics.recall_at_k)
        return record

    def save_model(self, directory: Path) -> None:
        """Write the selector as it ships."""
        self.model.save(directory)

    def load_model(self, directory: Path) -> LiteSelector:
        """Read a saved selector onto this selector's device, in its dtype."""
        return LiteSelector.load(directory, device=self.model.device, dtype=self.model.dtype)
