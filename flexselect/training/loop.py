"""The training loop every model here shares: schedule, AdamW, clipping, held-out checks, checkpoints.

Written like nanoGPT's `train.py`: one loop with labelled phases, with a dataclass config and `logging`. A
`Task` supplies only what differs between models: the modules to train, the micro-batches of a step (a pure
function of the step), the loss of a micro-batch, held-out metrics and how its model is saved and loaded.
No randomness is drawn inside the loop, so the same task, config and thread count give the same losses
whether the run was interrupted and resumed or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from flexselect.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from flexselect.training.optim import adamw
from flexselect.training.schedule import warmup_cosine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """How the loop runs.

    Attributes:
        steps: optimizer steps in the schedule (the learning rate reaches `min_lr` there; the run ends there).
        lr, min_lr: peak learning rate after warm-up, and the floor of the cosine decay.
        warmup: linear warm-up steps.
        weight_decay, betas: AdamW settings (decay on matrices only).
        grad_clip: global gradient-norm clip.
        eval_every, save_every: steps between held-out evaluations (and log lines), and between checkpoints;
            both also happen at the last step.
        minutes: stop early (evaluated and checkpointed) after this much training time, across resumes.
        stop_at: end (evaluated and checkpointed) after this many steps without changing the schedule.
        desc: the progress bar's label.
    """

    steps: int
    lr: float
    min_lr: float
    warmup: int
    weight_decay: float
    betas: tuple[float, float]
    grad_clip: float
    eval_every: int
    save_every: int
    minutes: float | None = None
    stop_at: int | None = None
    desc: str = "train"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup < 0 or self.eval_every < 1 or self.save_every < 1:
            raise ValueError(
                f"need steps >= 1, warmup >= 0, eval_every >= 1, save_every >= 1; got {self.steps}, "
                f"{self.warmup}, {self.eval_every}, {self.save_every}"
            )
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got {self.min_lr} and {self.lr}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")
        if self.stop_at is not None and self.stop_at < 1:
            raise ValueError(f"stop_at must be positive, got {self.stop_at}")

    def lr_at(self, step: int) -> float:
        """The learning rate of `step` (`schedule.warmup_cosine`)."""
        return warmup_cosine(step, lr=self.lr, min_lr=self.min_lr, warmup=self.warmup, total=self.steps)


class Task(Protocol):
    """What one kind of training supplies to the loop.

    Attributes:
        model: the model being trained, saved as a loadable directory at every checkpoint.
        extras: training-only modules trained beside it (e.g. auxiliary probes), saved as NAME.safetensors.
    """

    model: nn.Module
    extras: dict[str, nn.Module]

    def batches(self, step: int) -> Sequence[Any]:
        """The micro-batches of `step`, a pure function of the step; their gradients are averaged."""
        ...

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise on one micro-batch, and numbers to log (the first one shows on the bar)."""
        ...

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out metrics after `step` steps (called in eval mode, without gradients)."""
        ...

    def save_model(self, directory: Path) -> None:
        """Write the model as a loadable directory."""
        ...

    def load_model(self, directory: Path) -> nn.Module:
        """Read a model written by `save_model` (a new module; the loop copies its weights)."""
        ...


def run(
    task: Task,
    config: LoopConfig,
    *,
    out: Path,
    resume: bool = False,
    progress: bool = True,
    on_save: Callable[[Path], None] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `task` in place, checkpointing to `out`; returns the final loop state (also in out/).

    Args:
        task: what trains, on what data, with which loss.
        config: schedule, optimizer and cadence.
        out: checkpoint directory (a loadable model directory at every save).
        resume: continue from the checkpoint in `out` (when there is one) instead of starting fresh.
        progress: show a tqdm progress bar.
        on_save: called after each checkpoint is written (e.g. to write a processor or a recipe beside it).
        settings: the task's own settings, recorded as `config` in the loop state.

    Returns:
        The loop state: step, elapsed seconds, one history record per evaluation, and `settings`.
    """
    # ---- setup: the optimizer over model and training-only modules, and where a resumed run stands
    trainable = nn.ModuleDict({"model": task.model, **task.extras})
    optimizer = adamw(trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    state: dict[str, Any] = {"step": 0, "elapsed_s": 0.0, "history": [], "config": settings or {}}
    if resume and has_checkpoint(out):
        state = load_checkpoint(
            out, load_model=task.load_model, model=task.model, optimizer=optimizer, extras=task.extras
        )
        logger.info(
            "resumed from %s at step %d of %d (%.0f s trained)",
            out,
            state["step"],
            config.steps,
            state["elapsed_s"],
        )
    end = config.steps if config.stop_at is None else min(config.steps, config.stop_at)
    started = time.perf_counter() - state["elapsed_s"]
    window: list[dict[str, float]] = []  # logged numbers of each step since the last evaluation
    bar = tqdm(total=config.steps, initial=state["step"], disable=not progress, desc=config.desc, unit="step")
    step = state["step"]
    while step < end:
        # ---- data: this step's micro-batches
        batches = task.batches(step)
        # ---- forward / backward, one micro-batch at a time, gradients averaged over them
        trainable.train()
        lr = config.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logged: dict[str, float] = {}
        for batch in batches:
            loss, numbers = task.loss(batch)
            (loss / len(batches)).backward()
            for name, value in numbers.items():
                logged[name] = logged.get(name, 0.0) + value / len(batches)
        torch.nn.utils.clip_grad_norm_(trainable.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window.append(logged)
        bar.update(1)
        bar.set_postfix(loss=f"{next(iter(logged.values()), 0.0):.3f}", lr=f"{lr:.1e}")
        # ---- held-out evaluation and logging
        elapsed = time.perf_counter() - started
        out_of_time = config.minutes is not None and elapsed >= 60 * config.minutes
        done = step == end or out_of_time
        if step % config.eval_every == 0 or done:
            trainable.eval()
            with torch.no_grad():
                metrics = task.evaluate(step)
            record = {"step": step, "seconds": round(elapsed, 1), "lr": lr, **_means(window), **metrics}
            state["history"].append(record)
            logger.info(
                " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            )
            window = []
        # ---- checkpoint
        if step % config.save_every == 0 or done:
            state.update(step=step, elapsed_s=time.perf_counter() - started)
            save_checkpoint(
                out, save_model=task.save_model, optimizer=optimizer, state=state, extras=task.extras
            )
            if on_save is not None:
                on_save(out)
        if out_of_time:
            logger.info("stopping at step %d: the %.1f minute budget is spent", step, config.minutes)
            break
    bar.close()
    return state


def _means(window: list[dict[str, float]]) -> dict[str, float]:
    """Each logged number averaged over the steps of `window` (named `train_*` by the task)."""
    names = dict.fromkeys(name for numbers in window for name in numbers)
    return {name: sum(numbers.get(name, 0.0) for numbers in window) / max(1, len(window)) for name in names}
