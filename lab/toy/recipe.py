"""The toy model's training recipe and driver: build tokenizer, model and processor, then run the loop."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from flexselect.toy.batch import ToyTextCodec, answers_correct, collate, forward
from flexselect.toy.model import ToyModelConfig, build_toy_model, build_toy_processor
from flexselect.toy.tokenizer import build_word_tokenizer
from flexselect.toy.train import TrainConfig, train
from flexselect.training.checkpoint import config_from_json
from lab.recipes import read_recipe, recipe_saver
from lab.toy.data import EVIDENCE_CLASSES, TOKEN_CLASSES, Labelled, ToyData, ToyDataConfig
from streams.synth import WORDS

logger = logging.getLogger(__name__)
EVAL_SEED = 12345  # held-out clips; training streams are keyed by (seed, step)


def default_train() -> TrainConfig:
    """The shipped toy's optimisation: 4000 steps with three auxiliary losses.

    A linear probe reads each visual token's colour, shape, row and column from the residual stream entering
    layer 1; the question rows' attention at layer 2 is pushed onto the evidence tokens; and a probe on the
    question rows leaving layer 2 must name the evidence's colour, shape, quadrant and third. Without them
    the decoder stayed on a per-kind prior for 1000+ steps (it read colour off a blurred average of the
    frame but never learned to look one token up), which does not fit a 30-minute CPU budget.
    """
    return TrainConfig(
        steps=4000,
        eval_every=250,
        save_every=500,
        aux_weight=1.0,
        aux_classes=TOKEN_CLASSES,
        aux_layer=1,
        attn_weight=0.5,
        attn_layer=2,
        evidence_weight=1.0,
        evidence_classes=EVIDENCE_CLASSES,
    )


@dataclass(frozen=True)
class ToyRecipe:
    """Everything that determines a training run (with the seed inside `train`)."""

    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    train: TrainConfig = field(default_factory=default_train)
    eval_clips: int = 400  # held-out 16-frame clips checked during training
    eval_long_clips: int = 100  # held-out 64-frame clips, stretched and with dropped tokens

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "train": self.train.to_dict(),
            "eval_clips": self.eval_clips,
            "eval_long_clips": self.eval_long_clips,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToyRecipe:
        """Inverse of `to_dict`."""
        return cls(
            model=ToyModelConfig.from_dict(data["model"]),
            data=ToyDataConfig.from_dict(data["data"]),
            train=config_from_json(TrainConfig, data["train"]),
            eval_clips=int(data["eval_clips"]),
            eval_long_clips=int(data["eval_long_clips"]),
        )


def accuracy_by_kind(
    model: Qwen2_5_VLForConditionalGeneration,
    codec: ToyTextCodec,
    items: list[Labelled],
    tokens_per_second: float,
    batch_size: int = 64,
) -> dict[str, float]:
    """Greedy-answer accuracy of `items` per question kind, and over all ("all")."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        batch = collate([x.example for x in chunk], codec, tokens_per_second)
        with torch.no_grad():
            correct = answers_correct(forward(model, batch).output.logits, batch.labels)
        for item, ok in zip(chunk, correct.tolist(), strict=True):
            hits[item.kind].append(bool(ok))
    out = {kind: sum(v) / len(v) for kind, v in sorted(hits.items())}
    out["all"] = sum(sum(v) for v in hits.values()) / max(1, sum(len(v) for v in hits.values()))
    return out


def train_toy(out: Path, recipe: ToyRecipe, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the toy model into `out` (a loadable checkpoint directory); returns the final loop state."""
    torch.manual_seed(recipe.train.seed)
    tokenizer = build_word_tokenizer(WORDS)
    processor = build_toy_processor(tokenizer, recipe.model.frame_side)
    model = build_toy_model(recipe.model, tokenizer)
    codec = ToyTextCodec(processor)
    tps = recipe.model.tokens_per_second
    data = ToyData(recipe.data, codec, tps, seed=recipe.train.seed)
    short = data.heldout(recipe.eval_clips, 16, seed=EVAL_SEED)
    long = data.heldout(recipe.eval_long_clips, 64, seed=EVAL_SEED, augment=True)

    def evaluate(m: Qwen2_5_VLForConditionalGeneration) -> dict[str, float]:
        metrics = {f"acc16_{k}": v for k, v in accuracy_by_kind(m, codec, short, tps).items()}
        metrics["acc64_aug"] = accuracy_by_kind(m, codec, long, tps)["all"]
        return metrics

    return train(
        model,
        config=recipe.train,
        batch_at=data.batch_at,
        evaluate=evaluate,
        out=out,
        resume=resume,
        on_save=recipe_saver(recipe, then=processor.save_pretrained),
        progress=progress,
    )


def saved_recipe(directory: Path) -> ToyRecipe:
    """The recipe a checkpoint directory was trained with."""
    return ToyRecipe.from_dict(read_recipe(directory))
