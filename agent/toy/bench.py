"""The needle benchmark: accuracy and time of answering methods on held-out seeded needle videos.

Methods form a table of factories (`lite`, FlexSelect-Lite, needs a selector directory). Every method
answers through `FlexSelectPipeline`, from the same decoded frames, with a token budget.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from agent.toy.videos import NeedleCase, WorldVideos, decode, write_cases
from flexselect.adapters import VideoLLMAdapter
from flexselect.config import SelectionConfig
from flexselect.pipeline import AnswerResult, FlexSelectPipeline
from flexselect.ranking import ReferenceScorer
from flexselect.types import Prompt, VisualTokens
from streams.sampling import uniform_indices

logger = logging.getLogger(__name__)
MAX_NEW_TOKENS = 8
BENCH_SEED = 900_000  # world seeds of the benchmark videos (training never sees world videos)


@dataclass(frozen=True)
class BenchContext:
    """What a method may use: the model, the token budget (and its worth in frames), layer, seed, and the
    FlexSelect-Lite selector directory (None: `lite` cannot run)."""

    adapter: VideoLLMAdapter
    budget: int
    budget_frames: int
    layer: int
    seed: int
    selector: Path | None = None


class Method(Protocol):
    """Answers a question about decoded frames."""

    def answer(self, frames: np.ndarray, times: np.ndarray, question: str) -> AnswerResult: ...


class RandomScorer:
    """Uniform random scores (seeded): keeping the top ones keeps random tokens."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def score(self, prompt: Prompt, tokens: VisualTokens) -> torch.Tensor:
        return torch.rand(len(tokens), generator=self.generator)


class UniformFrames:
    """Evenly spaced frames up to the budget, answered with all their tokens."""

    def __init__(self, pipeline: FlexSelectPipeline, frames: int) -> None:
        self.pipeline = pipeline
        self.frames = frames

    def answer(self, frames: np.ndarray, times: np.ndarray, question: str) -> AnswerResult:
        keep = uniform_indices(len(frames), min(self.frames, len(frames)))
        return self.pipeline.answer(frames[keep], times[keep], question)


def _pipeline(ctx: BenchContext, scorer: Any, budget: int) -> FlexSelectPipeline:
    config = SelectionConfig(budget=budget, layer=ctx.layer)
    return FlexSelectPipeline(ctx.adapter, scorer, config, max_new_tokens=MAX_NEW_TOKENS)


def _lite(ctx: BenchContext) -> Method:
    from agent.selector.bench import lite_method

    if ctx.selector is None:
        raise ValueError("the lite method needs a selector directory")
    return lite_method(ctx, ctx.selector, max_new_tokens=MAX_NEW_TOKENS)


METHODS: dict[str, Callable[[BenchContext], Method]] = {
    "all": lambda ctx: _pipeline(ctx, None, ctx.adapter.max_positions),
    "uniform": lambda ctx: UniformFrames(_pipeline(ctx, None, ctx.adapter.max_positions), ctx.budget_frames),
    "random": lambda ctx: _pipeline(ctx, RandomScorer(ctx.seed), ctx.budget),
    "reference": lambda ctx: _pipeline(ctx, ReferenceScorer(ctx.adapter, layer=ctx.layer), ctx.budget),
    "lite": _lite,
}


def tokens_per_frame(adapter: VideoLLMAdapter, side: int) -> float:
    """Visual tokens one frame of `side` pixels costs this model (a temporal patch counts its frames)."""
    frames = np.zeros((4, side, side, 3), dtype=np.uint8)
    return len(adapter.encode(frames, np.arange(4) / 2.0)) / 4


def run_method(method: Method, cases: list[tuple[NeedleCase, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Answer every case; accuracy (exact answers), mean seconds per question, per-kind accuracy."""
    hits: dict[str, list[bool]] = defaultdict(list)
    seconds = 0.0
    failed = 0
    for case, frames, times in cases:
        start = time.perf_counter()
        try:
            result = method.answer(frames, times, case.question.question)
        except ValueError as exc:  # e.g. all tokens do not fit the model's positions
            logger.warning("%s: %s", case.video.name, exc)
            failed += 1
            continue
        seconds += time.perf_counter() - start
        hits[case.question.kind].append(result.answer == case.question.answer)
    n = sum(len(v) for v in hits.values())
    return {
        "accuracy": round(sum(sum(v) for v in hits.values()) / n, 4) if n else None,
        "n": n,
        "seconds": round(seconds / n, 4) if n else None,
        "failed": failed,
        "by_kind": {k: round(sum(v) / len(v), 4) for k, v in sorted(hits.items())},
    }


def needle_bench(
    adapter: VideoLLMAdapter,
    *,
    frame_counts: list[int],
    n: int,
    budget: int,
    budget_frames: int,
    layer: int,
    kinds: tuple[str, ...],
    methods: list[str],
    videos: Path,
    size: int,
    seed: int = BENCH_SEED,
    selector: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows {method, frames, budget, accuracy, n, seconds, failed, by_kind} per frame count and method."""
    ctx = BenchContext(
        adapter=adapter, budget=budget, budget_frames=budget_frames, layer=layer, seed=seed, selector=selector
    )
    rows = []
    for frames in frame_counts:
        spec = WorldVideos(frames=frames, size=size)
        cases = write_cases(videos / f"{frames}f", spec, count=n, seed=seed + 100_000 * frames, kinds=kinds)
        decoded = [(case, *decode(case)) for case in cases]
        for name in methods:
            row = {
                "method": name,
                "frames": frames,
                "budget": budget,
                **run_method(METHODS[name](ctx), decoded),
            }
            rows.append(row)
            if progress is not None:
                progress(f"{name:>9} {frames:>5} frames: accuracy {row['accuracy']} over {row['n']}")
    return rows
