"""The needle benchmark: accuracy and time of answering methods on held-out seeded needle videos.

Methods form a table of factories (`lite`, FlexSelect-Lite, needs a selector directory). Every method
answers through `FlexSelectPipeline`, from the same decoded frames, with a token budget. Methods that
score tokens run once per selection style on the same videos: "paper" (interleaved groups, an equal
share per group, budget rounded to whole frames; what `answer` and `eval` use) and "stream" (contiguous
groups, one global top-K; what a stream's memory uses). Besides answer accuracy, a row reports how often
the first (best-scoring) evidence span overlaps the needle the question asked about.
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

from flexselect.adapters import VideoLLMAdapter
from flexselect.config import SelectionConfig, SelectionStyle
from flexselect.pipeline import AnswerResult, FlexSelectPipeline
from flexselect.ranking import ReferenceScorer
from flexselect.types import Prompt, VisualTokens
from lab.needle.lite import lite_method
from lab.needle.plots import row_label
from lab.needle.videos import NeedleCase, WorldVideos, decode, write_cases
from streams.sampling import uniform_indices

logger = logging.getLogger(__name__)
MAX_NEW_TOKENS = 8
BENCH_SEED = 900_000  # world seeds of the benchmark videos (training never sees world videos)


@dataclass(frozen=True)
class BenchContext:
    """What a method may use: the model, the token budget (and its worth in frames), layer, seed, the
    FlexSelect-Lite selector directory (None: `lite` cannot run) and the selection style."""

    adapter: VideoLLMAdapter
    budget: int
    budget_frames: int
    layer: int
    seed: int
    selector: Path | None = None
    selection: SelectionStyle = "paper"


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
    config = SelectionConfig.styled(ctx.selection, budget=budget, layer=ctx.layer)
    return FlexSelectPipeline(ctx.adapter, scorer, config, max_new_tokens=MAX_NEW_TOKENS)


def _lite(ctx: BenchContext) -> Method:
    if ctx.selector is None:
        raise ValueError("the lite method needs a selector directory")
    return lite_method(ctx, ctx.selector, max_new_tokens=MAX_NEW_TOKENS, selection=ctx.selection)


METHODS: dict[str, Callable[[BenchContext], Method]] = {
    "all": lambda ctx: _pipeline(ctx, None, ctx.adapter.max_positions),
    "uniform": lambda ctx: UniformFrames(_pipeline(ctx, None, ctx.adapter.max_positions), ctx.budget_frames),
    "random": lambda ctx: _pipeline(ctx, RandomScorer(ctx.seed), ctx.budget),
    "reference": lambda ctx: _pipeline(ctx, ReferenceScorer(ctx.adapter, layer=ctx.layer), ctx.budget),
    "lite": _lite,
}
SCORED = ("random", "reference", "lite")  # methods whose selection style matters
SELECTIONS: tuple[SelectionStyle, ...] = ("paper", "stream")


def first_evidence_hits(result: AnswerResult, case: NeedleCase, step_s: float) -> bool | None:
    """Whether the first evidence span overlaps a needle the question asked about (None: no scores, so no
    ranking). A span's last step covers `step_s` seconds after its start time."""
    if result.selection is None or not result.evidence:
        return None if result.selection is None else False
    best = result.evidence[0]
    return any(best.start < end and best.end + step_s > start for start, end in case.spans)


def step_seconds(adapter: VideoLLMAdapter, times: np.ndarray) -> float:
    """Seconds one token's frame (a temporal patch of frames for Qwen) covers at these frame times."""
    spacing = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    return int(getattr(adapter, "temporal_patch", 1)) * spacing


def tokens_per_frame(adapter: VideoLLMAdapter, side: int) -> float:
    """Visual tokens one frame of `side` pixels costs this model (a temporal patch counts its frames)."""
    frames = np.zeros((4, side, side, 3), dtype=np.uint8)
    return len(adapter.encode(frames, np.arange(4) / 2.0)) / 4


def run_method(
    method: Method, cases: list[tuple[NeedleCase, np.ndarray, np.ndarray]], step_s: float = 1.0
) -> dict[str, Any]:
    """Answer every case; accuracy (exact answers), mean seconds per question, per-kind accuracy, the share
    whose first evidence span overlaps the asked needle (None without scores), the budgets used."""
    hits: dict[str, list[bool]] = defaultdict(list)
    first: list[bool] = []
    budgets: set[int] = set()
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
        found = first_evidence_hits(result, case, step_s)
        if found is not None:
            first.append(found)
        if result.budget is not None:
            budgets.add(result.budget)
    n = sum(len(v) for v in hits.values())
    return {
        "accuracy": round(sum(sum(v) for v in hits.values()) / n, 4) if n else None,
        "evidence_first": round(sum(first) / len(first), 4) if first else None,
        "budget_used": sorted(budgets),
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
    selections: tuple[SelectionStyle, ...] = SELECTIONS,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows {method, selection, frames, budget, budget_used, accuracy, evidence_first, n, seconds, failed,
    by_kind} per frame count, method and (for scored methods) selection style in `selections`."""
    rows = []
    for frames in frame_counts:
        spec = WorldVideos(frames=frames, size=size)
        cases = write_cases(videos / f"{frames}f", spec, count=n, seed=seed + 100_000 * frames, kinds=kinds)
        decoded = [(case, *decode(case)) for case in cases]
        step_s = step_seconds(adapter, decoded[0][2]) if decoded else 1.0
        for name in methods:
            for style in selections if name in SCORED else (None,):
                ctx = BenchContext(
                    adapter=adapter,
                    budget=budget,
                    budget_frames=budget_frames,
                    layer=layer,
                    seed=seed,
                    selector=selector,
                    selection=style or "paper",
                )
                row = {
                    "method": name,
                    "selection": style,
                    "frames": frames,
                    "budget": budget,
                    **run_method(METHODS[name](ctx), decoded, step_s),
                }
                rows.append(row)
                if progress is not None:
                    progress(
                        f"{row_label(row):>18} {frames:>5} frames: accuracy {row['accuracy']}, first "
                        f"evidence on the needle {row['evidence_first']} over {row['n']}"
                    )
    return rows
