"""How well a selector ranks like its teacher: Spearman correlation and recall of the teacher's top-K."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from flexselect.lite.model import LiteSelector
from flexselect.training.data import TeacherSample
from flexselect.training.loss import spearman


def recall_at_k(pred: torch.Tensor, target: torch.Tensor, k: int) -> float:
    """Fraction of the target's top-`k` that are also in the prediction's top-`k` (k capped at n)."""
    k = min(k, len(target))
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    top_pred = set(pred.topk(k).indices.tolist())
    return sum(i in top_pred for i in target.topk(k).indices.tolist()) / k


@dataclass
class RankMetrics:
    """Mean per-group metrics over held-out groups."""

    spearman: float
    recall_at_k: float
    k: int
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def selector_scores(selector: LiteSelector, sample: TeacherSample) -> torch.Tensor:
    """The selector's scores (N,) for one teacher sample (differentiable when grad is enabled)."""
    lite = selector.visual_embeds(sample.features, sample.layout.kind, sample.layout.token_id)
    return selector.score_embeds(sample.prompt, lite, sample.layout)


@torch.no_grad()
def predictions(selector: LiteSelector, samples: Sequence[TeacherSample]) -> list[torch.Tensor]:
    """The selector's scores (float32, CPU) for every sample, in eval mode."""
    was_training = selector.training
    selector.eval()
    out = [selector_scores(selector, s).float().cpu() for s in samples]
    selector.train(was_training)
    return out


def rank_metrics(preds: Sequence[torch.Tensor], samples: Sequence[TeacherSample], *, k: int) -> RankMetrics:
    """Mean Spearman and recall@k of predictions against the samples' teacher scores."""
    if not samples:
        raise ValueError("no held-out samples to evaluate on")
    rho = sum(spearman(p, s.teacher) for p, s in zip(preds, samples, strict=True))
    recall = sum(recall_at_k(p, s.teacher, k) for p, s in zip(preds, samples, strict=True))
    return RankMetrics(spearman=rho / len(samples), recall_at_k=recall / len(samples), k=k, n=len(samples))


def evaluate(selector: LiteSelector, samples: Sequence[TeacherSample], *, k: int) -> RankMetrics:
    """Spearman and recall@k of the selector against the teacher, averaged over `samples`."""
    if not samples:
        raise ValueError("no held-out samples to evaluate on")
    return rank_metrics(predictions(selector, samples), samples, k=k)
