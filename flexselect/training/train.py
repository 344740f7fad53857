"""One readable training loop for the selector: rank distillation from the reference layer's scores.

Seeded and resumable: the samples of a step come from a permutation keyed by (seed, epoch), the learning
rate is a function of the step, and no other randomness is drawn, so a resumed run takes exactly the steps
an uninterrupted one would. Held-out Spearman and top-K recall are measured at the end of every epoch,
when the checkpoint (a loadable selector directory) is written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from flexselect.lite.model import LiteSelector
from flexselect.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from flexselect.training.data import TeacherSample
from flexselect.training.loss import l1_loss, spearman_loss
from flexselect.training.metrics import evaluate, selector_scores

logger = logging.getLogger(__name__)


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
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at the last step."""
    warm = max(1, round(config.warmup * total))
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


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


def make_optimizer(selector: LiteSelector, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only."""
    params = [p for p in selector.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, foreach=False)


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
    # ---- setup: what trains, the optimizer, and where a resumed run stands
    if not samples:
        raise ValueError("no training samples")
    selector.projector.requires_grad_(config.train_projector)
    selector.gradient_checkpointing = config.gradient_checkpointing
    optimizer = make_optimizer(selector, config)
    per_epoch = math.ceil(len(samples) / config.batch_size)
    total = config.epochs * per_epoch
    state: dict[str, Any] = {"step": 0, "elapsed_s": 0.0, "history": [], "config": config.to_dict()}
    if resume and has_checkpoint(out):
        state = load_checkpoint(out, selector, optimizer)
        logger.info("resumed from %s at step %d of %d", out, state["step"], total)
    device = selector.device
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if config.bf16 and device.type == "cuda"
        else contextlib.nullcontext()
    )
    started = time.perf_counter() - state["elapsed_s"]
    end = total if stop_at is None else min(total, stop_at)
    bar = tqdm(total=total, initial=state["step"], disable=not progress, desc="selector", unit="step")
    losses: list[float] = []
    step = state["step"]
    while step < end:
        # ---- data: this step's groups, from the epoch's seeded order
        epoch, index = divmod(step, per_epoch)
        order = epoch_order(config.seed, epoch, len(samples))
        batch = [samples[int(i)] for i in order[index * config.batch_size : (index + 1) * config.batch_size]]
        # ---- forward / backward, one group at a time (groups differ in length)
        selector.train()
        lr = learning_rate(step, total, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = 0.0
        for sample in batch:
            with autocast:
                scores = selector_scores(selector, sample)
            loss = rank_loss(scores, sample.teacher, config) / len(batch)
            loss.backward()
            step_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(selector.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(step_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.1e}")
        # ---- end of epoch (or of the run): held-out metrics and a checkpoint
        elapsed = time.perf_counter() - started
        out_of_time = config.minutes is not None and elapsed >= 60 * config.minutes
        if step % per_epoch == 0 or step == end or out_of_time:
            metrics = evaluate(selector, heldout, k=config.eval_k) if heldout else None
            record = {
                "step": step,
                "epoch": round(step / per_epoch, 3),
                "seconds": round(elapsed, 1),
                "lr": lr,
                "train_loss": sum(losses) / max(1, len(losses)),
                **(
                    {}
                    if metrics is None
                    else {"spearman": metrics.spearman, "recall_at_k": metrics.recall_at_k}
                ),
            }
            losses = []
            state["history"].append(record)
            logger.info(
                " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            )
            state.update(step=step, elapsed_s=time.perf_counter() - started)
            save_checkpoint(out, selector, optimizer, state)
            if on_save is not None:
                on_save(out)
        if out_of_time:
            logger.info("stopping at step %d: the %.1f minute budget is spent", step, config.minutes)
            break
    bar.close()
    return state
