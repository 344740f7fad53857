"""The toy model's training on the shared loop: its settings, its auxiliary losses and its task.

The caller supplies `batch_at(step)`, a pure function of the step (so a resumed run sees exactly the batches
an uninterrupted one would), and `evaluate(model)`, which returns held-out metrics. This module adds the
toy's loss (answer cross-entropy plus optional auxiliary probe and evidence-attention losses); schedule,
optimizer, checkpointing and resuming are `flexselect.training.loop`'s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration

from flexselect.toy.batch import IGNORE, ToyBatch, ToyForward, answers_correct, forward, visual_rows
from flexselect.training.checkpoint import config_to_json
from flexselect.training.loop import LoopConfig, run


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        steps: optimizer steps in the schedule (the run ends there).
        lr, min_lr: peak learning rate after warm-up, and the floor of the cosine decay at `steps`.
        warmup: linear warm-up steps.
        weight_decay, betas: AdamW settings.
        grad_clip: global gradient-norm clip.
        eval_every: steps between held-out evaluations (and progress-log lines).
        save_every: steps between checkpoints (one is always written at the end).
        minutes: stop early (and checkpoint) once this much wall time has been spent, across resumes.
        seed: seeds the model initialisation and the data (through `batch_at`).
        aux_weight, aux_classes: weight of the auxiliary per-token attribute loss (0 disables it) and the
            class count of each attribute in the batches' `token_targets`.
        aux_layer: the probe reads the decoder's residual stream entering this layer, at visual positions.
        attn_weight, attn_layer: weight of the evidence-attention loss (0 disables it): the question rows'
            attention at `attn_layer` is pushed onto the tokens that show the question's evidence.
        evidence_weight, evidence_classes: weight of the evidence read-out loss (0 disables it) and the
            class counts of the batches' `evidence_targets`: a probe on the question rows leaving
            `attn_layer` must name the attributes of the evidence those rows attended to.
    """

    steps: int = 6000
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 200
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    eval_every: int = 250
    save_every: int = 1000
    minutes: float | None = None
    seed: int = 1
    aux_weight: float = 0.0
    aux_classes: tuple[int, ...] = ()
    aux_layer: int = 2
    attn_weight: float = 0.0
    attn_layer: int = 2
    evidence_weight: float = 0.0
    evidence_classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.loop()  # checks the loop's settings
        if self.aux_weight < 0 or (self.aux_weight > 0 and not self.aux_classes):
            raise ValueError(f"aux_weight {self.aux_weight} needs to be >= 0, and > 0 only with aux_classes")
        if self.evidence_weight < 0 or (self.evidence_weight > 0 and not self.evidence_classes):
            raise ValueError(
                f"evidence_weight {self.evidence_weight} needs to be >= 0, and > 0 only with evidence_classes"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return config_to_json(self)

    def loop(self) -> LoopConfig:
        """The loop's settings."""
        return LoopConfig(
            steps=self.steps,
            lr=self.lr,
            min_lr=self.min_lr,
            warmup=self.warmup,
            weight_decay=self.weight_decay,
            betas=self.betas,
            grad_clip=self.grad_clip,
            eval_every=self.eval_every,
            save_every=self.save_every,
            minutes=self.minutes,
        )


class TokenProbe(nn.Module):
    """Linear read-outs of per-token attributes from the decoder's residual stream, for an auxiliary loss.

    Training-only (never saved with the model): it gives a dense signal about what each visual token shows
    and where it sits before the decoder has learned which token a question is about. Position reaches a
    token only through rotary attention to the fixed prompt tokens, so it has to be learned in the decoder.
    """

    def __init__(self, dim: int, classes: tuple[int, ...]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(dim, c) for c in classes)

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over attributes; `features` (N, D), `targets` (N, A) with IGNORE to skip."""
        losses = []
        for i, head in enumerate(self.heads):
            valid = targets[:, i] != IGNORE
            if bool(valid.any()):
                losses.append(nn.functional.cross_entropy(head(features[valid]), targets[valid, i]))
        return torch.stack(losses).mean() if losses else features.sum() * 0.0


class AttentionInput:
    """Records what enters one decoder layer's attention during a forward (normed hidden states, RoPE)."""

    def __init__(self, attention: nn.Module) -> None:
        self.attention = attention
        self.hidden: torch.Tensor | None = None
        self.cos: torch.Tensor | None = None
        self.sin: torch.Tensor | None = None

    def __enter__(self) -> AttentionInput:
        self._handle = self.attention.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def _hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.cos, self.sin = kwargs["position_embeddings"]


def evidence_attention_loss(captured: AttentionInput, batch: ToyBatch) -> torch.Tensor:
    """-log of the attention mass the query rows put on evidence tokens (mean over heads and rows).

    The attention is recomputed from the captured layer input exactly as the layer computes it (and as
    `flexselect.ranking` scores it): q/k projections, M-RoPE, grouped KV heads, causal softmax over all keys.
    """
    attn, x = captured.attention, captured.hidden
    assert x is not None and captured.cos is not None and captured.sin is not None
    assert batch.query_mask is not None and batch.evidence is not None
    rope = sys.modules[type(attn).__module__]
    b, length, _ = x.shape
    q = attn.q_proj(x).view(b, length, -1, attn.head_dim).transpose(1, 2)  # (B, H, L, hd)
    k = attn.k_proj(x).view(b, length, -1, attn.head_dim).transpose(1, 2)  # (B, Hkv, L, hd)
    q, k = rope.apply_rotary_pos_emb(q, k, captured.cos, captured.sin)
    k = rope.repeat_kv(k, attn.num_key_value_groups)  # (B, H, L, hd)
    logits = (q @ k.transpose(-1, -2)) * attn.scaling  # (B, H, L, L)
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    allowed = causal[None, None] & batch.attention_mask.bool()[:, None, None, :]
    probs = logits.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    mass = (probs * batch.evidence[:, None, None, :]).sum(dim=-1).mean(dim=1)  # (B, L), mean over heads
    rows = batch.query_mask & batch.evidence.any(dim=1, keepdim=True)
    per_example = (mass * rows).sum(dim=1) / rows.sum(dim=1).clamp(min=1)
    valid = rows.any(dim=1)
    return -torch.log(per_example[valid] + 1e-6).mean()


def step_losses(
    model: Qwen2_5_VLForConditionalGeneration,
    extras: dict[str, nn.Module],
    batch: ToyBatch,
    config: TrainConfig,
) -> tuple[ToyForward, torch.Tensor, torch.Tensor]:
    """One forward: (output, total loss to minimise, detached sum of the auxiliary losses for the log)."""
    probing = "probe" in extras and batch.token_targets is not None
    reading = "evidence_probe" in extras and batch.evidence_targets is not None
    attending = config.attn_weight > 0 and batch.evidence is not None and bool(batch.evidence.any())
    with AttentionInput(model.model.language_model.layers[config.attn_layer].self_attn) as captured:
        result = forward(model, batch, hidden_states=probing or reading)
    loss, aux = result.output.loss, torch.zeros(())
    if probing:  # what each visual token shows and where, entering `aux_layer`
        rows, index = visual_rows(result.output.hidden_states[config.aux_layer], batch)
        token_loss = extras["probe"].loss(rows, batch.token_targets[index])  # type: ignore[index, operator]
        aux = aux + token_loss.detach()
        loss = loss + config.aux_weight * token_loss
    if attending:  # the question rows look at the evidence at `attn_layer`
        attn_loss = evidence_attention_loss(captured, batch)
        aux = aux + attn_loss.detach()
        loss = loss + config.attn_weight * attn_loss
    if reading:  # ... and leave that layer knowing what they saw
        queries = result.output.hidden_states[config.attn_layer + 1][batch.query_mask]  # (rows, D)
        owner = batch.query_mask.nonzero()[:, 0]  # example of each query row
        targets = batch.evidence_targets[owner]  # type: ignore[index]
        read_loss = extras["evidence_probe"].loss(queries, targets)  # type: ignore[operator]
        aux = aux + read_loss.detach()
        loss = loss + config.evidence_weight * read_loss
    return result, loss, aux


def train(
    model: Qwen2_5_VLForConditionalGeneration,
    *,
    config: TrainConfig,
    batch_at: Callable[[int], ToyBatch],
    evaluate: Callable[[Qwen2_5_VLForConditionalGeneration], dict[str, float]],
    out: Path,
    resume: bool = False,
    on_save: Callable[[Path], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `model` in place, checkpointing to `out`; returns the final loop state (also in out/).

    Args:
        model: the model to train (freshly initialised; its weights are replaced when resuming).
        config: optimisation settings.
        batch_at: the training batch of a step (deterministic in the step).
        evaluate: held-out metrics of the model (called in eval mode, without gradients).
        out: checkpoint directory (a loadable model directory).
        resume: continue from the checkpoint in `out` instead of starting fresh.
        on_save: called after each checkpoint is written (e.g. to save the processor beside it).
        progress: show a tqdm progress bar.
    """
    task = ToyTask(model, config, batch_at, evaluate)
    return run(
        task,
        config.loop(),
        out=out,
        resume=resume,
        progress=progress,
        on_save=on_save,
        settings=config.to_dict(),
    )


class ToyTask:
    """The toy's part of the loop: one batch per step, the answer loss plus auxiliary losses, its metrics.

    The auxiliary probes are training-only modules (`extras`): checkpointed for resuming, never shipped.
    """

    def __init__(
        self,
        model: Qwen2_5_VLForConditionalGeneration,
        config: TrainConfig,
        batch_at: Callable[[int], ToyBatch],
        evaluate: Callable[[Qwen2_5_VLForConditionalGeneration], dict[str, float]],
    ) -> None:
        self.model, self.config = model, config
        self.batch_at, self.evaluate_model = batch_at, evaluate
        self.extras: dict[str, nn.Module] = {}
        hidden_size = model.config.text_config.hidden_size
        if config.aux_weight > 0:
            self.extras["probe"] = TokenProbe(hidden_size, config.aux_classes).to(model.device)
        if config.evidence_weight > 0:
            self.extras["evidence_probe"] = TokenProbe(hidden_size, config.evidence_classes).to(model.device)

    def batches(self, step: int) -> list[ToyBatch]:
        """The step's one batch."""
        return [self.batch_at(step)]

    def loss(self, batch: ToyBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The total loss, and the answer loss, answer accuracy and auxiliary losses to log."""
        result, loss, aux = step_losses(self.model, self.extras, batch, self.config)
        hits = answers_correct(result.output.logits, batch.labels).float().mean().item()
        return loss, {"train_loss": result.output.loss.item(), "train_accuracy": hits, "aux_loss": aux.item()}

    def evaluate(self, step: int) -> dict[str, float]:
        """The caller's held-out metrics."""
        return self.evaluate_model(self.model)

    def save_model(self, directory: Path) -> None:
        """Write the model as a released one (`save_pretrained`)."""
        self.model.save_pretrained(directory)

    def load_model(self, directory: Path) -> Qwen2_5_VLForConditionalGeneration:
        """Read a saved model in this model's dtype."""
        return type(self.model).from_pretrained(directory, dtype=self.model.dtype)
