"""Selector recipes and drivers: build teacher data for a base model, train a selector, evaluate it."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from agent.models import resolve_model
from flexselect.adapters import VideoLLMAdapter
from flexselect.config import Aggregation
from flexselect.lite import QWEN2_5_0_5B, QWEN2_5_0_5B_1D, DecoderShape, LiteSelector, encode_with_features
from flexselect.lite.config import MROPE_FAMILIES
from flexselect.ranking import ReferenceScorer
from flexselect.training.checkpoint import config_from_json
from flexselect.training.data import TeacherSample, TeacherStore, fill, teacher_sample
from flexselect.training.distill import TrainConfig, train
from flexselect.training.metrics import predictions, rank_metrics
from flexselect.types import VisualTokens
from lab.recipes import read_recipe, recipe_saver
from lab.selector.data import ExampleSource, WorldClips

logger = logging.getLogger(__name__)
HELDOUT_SEED = 770_077  # held-out world clips; training clips use the recipe's seed
RECALL_KS = (1, 2, 4, 8, 16, 32)  # the card reports recall of the teacher's top-K at each

# Decoder presets; vocab_size 0 means "the base model's vocabulary".
PRESETS: dict[str, DecoderShape] = {
    "qwen2.5-0.5b": QWEN2_5_0_5B,
    "toy": DecoderShape(
        vocab_size=1,
        hidden=64,
        layers=3,
        heads=4,
        kv_heads=2,
        intermediate=192,
        rope_theta=1e4,
        mrope_section=(2, 3, 3),
    ),
    "tiny": DecoderShape(
        vocab_size=1,
        hidden=32,
        layers=2,
        heads=4,
        kv_heads=2,
        intermediate=64,
        rope_theta=1e4,
        mrope_section=(1, 1, 2),
    ),
}


def decoder_for(preset: str, adapter: VideoLLMAdapter) -> DecoderShape:
    """A preset's shapes fitted to a base model: its vocabulary, and 1-D RoPE for 1-D families."""
    if preset not in PRESETS:
        raise ValueError(f"unknown selector preset {preset!r}; choose from {', '.join(PRESETS)}")
    shape = PRESETS[preset]
    if preset == "qwen2.5-0.5b" and adapter.family not in MROPE_FAMILIES:
        shape = QWEN2_5_0_5B_1D
    elif adapter.family not in MROPE_FAMILIES:
        shape = replace(shape, mrope_section=None)
    return replace(shape, vocab_size=max(shape.vocab_size, int(adapter.text_config.vocab_size)))


def default_train() -> TrainConfig:
    """The toy selector's optimisation (see docs/selector.md for how it was chosen)."""
    return TrainConfig(epochs=10, batch_size=8, lr=2e-3, min_lr=2e-5, warmup=0.03, tau=0.1, eval_k=16)


@dataclass(frozen=True)
class SelectorRecipe:
    """Everything that determines a selector training run besides the base model.

    Attributes:
        preset: decoder shapes (`PRESETS`).
        train: optimisation settings (its seed also seeds the selector's initialisation).
        train_clips, heldout_clips: world clips scored by the teacher for training and for held-out metrics.
        lengths: training clip lengths in frames; heldout_frames: held-out clip length.
        size: frame side of world clips (0: the base model's natural side).
    """

    preset: str = "toy"
    train: TrainConfig = field(default_factory=default_train)
    train_clips: int = 30000
    heldout_clips: int = 200
    lengths: tuple[int, ...] = (16, 32, 64)
    heldout_frames: int = 64
    size: int = 56

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train"] = self.train.to_dict()
        data["lengths"] = list(self.lengths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectorRecipe:
        train = config_from_json(TrainConfig, data["train"])
        return cls(**{**data, "train": train, "lengths": tuple(data["lengths"])})


def fingerprint(name: str) -> str | None:
    """A short hash of a local checkpoint's weights (None for hub ids): teacher caches are keyed by it."""
    weights = Path(resolve_model(name)) / "model.safetensors"
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def teacher_for(
    adapter: VideoLLMAdapter, layer: int | None = None, aggregation: Aggregation | None = None
) -> ReferenceScorer:
    """The training-free scorer at the checkpoint's calibrated layer and aggregation (or those given)."""
    return ReferenceScorer(adapter, layer=layer, aggregation=aggregation)


def teacher_samples(
    adapter: VideoLLMAdapter,
    teacher: ReferenceScorer,
    source: ExampleSource,
    *,
    cache: Path | None,
    key: dict[str, Any],
    progress: bool = True,
    desc: str = "teacher",
) -> list[TeacherSample]:
    """Teacher scores of every example of `source`: read from the cache directory, computing the rest."""
    bar = tqdm(total=len(source), disable=not progress, desc=desc, unit="group")

    def make(i: int) -> TeacherSample:
        ex = source[i]
        bar.update(1)
        return teacher_sample(adapter, teacher, ex.frames, ex.times, ex.question)

    if cache is None:
        samples = [make(i) for i in range(len(source))]
    else:
        store = TeacherStore(
            cache,
            {**key, "layer": teacher.layer, "aggregation": teacher.aggregation, "source": source.describe()},
        )
        bar.update(min(len(store), len(source)))
        samples = fill(store, len(source), make)
    bar.close()
    return samples


def train_selector(
    adapter: VideoLLMAdapter,
    *,
    model_name: str,
    recipe: SelectorRecipe,
    out: Path,
    train_source: ExampleSource | None = None,
    teacher_cache: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
    on_save: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Score training and held-out groups with the teacher, then train a selector into `out`."""
    teacher = teacher_for(adapter)
    key = {"model": model_name, "weights": fingerprint(model_name)}
    size = recipe.size
    source = train_source or WorldClips(
        count=recipe.train_clips, seed=recipe.train.seed, lengths=recipe.lengths, size=size
    )
    heldout_source = WorldClips(
        count=recipe.heldout_clips, seed=HELDOUT_SEED, lengths=(recipe.heldout_frames,), size=size
    )
    sub = (lambda name: teacher_cache / name) if teacher_cache is not None else (lambda name: None)
    samples = teacher_samples(
        adapter, teacher, source, cache=sub("train"), key=key, progress=progress, desc="teacher (train)"
    )
    heldout = teacher_samples(
        adapter,
        teacher,
        heldout_source,
        cache=sub("heldout"),
        key=key,
        progress=progress,
        desc="teacher (held-out)",
    )
    torch.manual_seed(recipe.train.seed)
    selector = LiteSelector.for_adapter(
        adapter,
        decoder_for(recipe.preset, adapter),
        base_model=model_name,
        teacher_layer=teacher.layer,
        aggregation=teacher.aggregation,
        extra={"base_weights": key["weights"]},
    ).to(adapter.device)

    return train(
        selector,
        config=recipe.train,
        samples=samples,
        heldout=heldout,
        out=out,
        resume=resume,
        progress=progress,
        stop_at=stop_at,
        on_save=recipe_saver(recipe, then=on_save),
    )


def saved_recipe(directory: Path) -> SelectorRecipe:
    """The recipe a selector directory was trained with."""
    return SelectorRecipe.from_dict(read_recipe(directory))


@dataclass
class Timing:
    """Milliseconds per 1,000 scored tokens, the selector (projector included) and the teacher."""

    selector_ms_per_1k: float
    teacher_ms_per_1k: float
    tokens: int


def time_scoring(
    adapter: VideoLLMAdapter,
    selector: LiteSelector,
    teacher: ReferenceScorer,
    source: ExampleSource,
    *,
    groups: int,
) -> Timing:
    """Time both scorers on the same freshly encoded groups (the shared vision tower is not counted)."""
    sel_s, teach_s, tokens = 0.0, 0.0, 0
    for i in range(min(groups, len(source))):
        ex = source[i]
        base, features = encode_with_features(adapter, ex.frames, ex.times)
        prompt = adapter.prompt(ex.question)
        for warm in (True, False):  # the first pass warms caches and kernels
            start = _now(adapter.device)
            with torch.no_grad():
                lite = selector.visual_embeds(features, base.kind, base.token_id)
                selector.score_embeds(prompt, lite, base)
            middle = _now(adapter.device)
            teacher.score(prompt, base)
            end = _now(adapter.device)
            if not warm:
                sel_s, teach_s, tokens = sel_s + middle - start, teach_s + end - middle, tokens + len(base)
    return Timing(1e6 * sel_s / max(1, tokens), 1e6 * teach_s / max(1, tokens), tokens)


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def frame_tokens(layout: VisualTokens) -> int:
    """Tokens of one frame (one temporal patch for Qwen): the span's tokens over its distinct frames."""
    return max(1, round(len(layout) / len(torch.unique(layout.frame))))


def evaluate_selector(
    adapter: VideoLLMAdapter,
    selector: LiteSelector,
    *,
    source: ExampleSource,
    k: int | None,
    timing_groups: int = 20,
    cache: Path | None = None,
    model_name: str = "",
    progress: bool = False,
) -> dict[str, Any]:
    """Held-out Spearman and top-K recall against the teacher, and scoring time against the teacher.

    `k=None` takes one frame's worth of tokens (a temporal patch for Qwen): the K of the paper's Recall@K and
    of `flexselect-agent calibrate`. Recall at every K of `RECALL_KS` is returned too (`recall_by_k`).
    """
    teacher = teacher_for(adapter, selector.config.teacher_layer, selector.config.aggregation)
    samples = teacher_samples(
        adapter,
        teacher,
        source,
        cache=cache,
        key={"model": model_name, "weights": fingerprint(model_name)},
        progress=progress,
        desc="teacher (eval)",
    )
    preds = predictions(selector, samples)
    k = k or frame_tokens(samples[0].layout)
    metrics = rank_metrics(preds, samples, k=k)
    by_k = {str(kk): round(rank_metrics(preds, samples, k=kk).recall_at_k, 4) for kk in RECALL_KS}
    timing = time_scoring(adapter, selector, teacher, source, groups=timing_groups)
    return {
        "spearman": round(metrics.spearman, 4),
        "recall_at_k": round(metrics.recall_at_k, 4),
        "k": metrics.k,
        "n": metrics.n,
        "ms_per_1k_tokens": round(timing.selector_ms_per_1k, 3),
        "teacher_ms_per_1k_tokens": round(timing.teacher_ms_per_1k, 3),
        "layer": teacher.layer,
        "tokens_per_group": round(sum(len(s) for s in samples) / len(samples), 1),
        "recall_by_k": by_k,
    }
