"""Held-out accuracy of a toy checkpoint per question kind, through the product path.

Two sets: in-memory clips from the clip sampler (16 frames by default), and world videos written as mp4
with `write_world`, decoded with `sample_uniform` and resized by the model's processor. Both are answered
by `FlexSelectPipeline` with all visual tokens, and an answer counts only when it equals the truth exactly.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from flexselect.adapters import VideoLLMAdapter
from flexselect.config import SelectionConfig
from flexselect.pipeline import FlexSelectPipeline
from flexselect.toy.batch import ToyTextCodec
from lab.needle.videos import NeedleCase, WorldVideos, decode, write_cases
from lab.toy.data import Labelled, ToyData, ToyDataConfig
from streams.synth import QUESTION_KINDS

CLIP_SEED = 4242  # held-out clip stream (training: (seed, step); monitoring during training: 12345)
VIDEO_SEED = 700_000  # world seeds of the held-out videos
MAX_NEW_TOKENS = 8


def all_tokens(adapter: VideoLLMAdapter) -> FlexSelectPipeline:
    """A pipeline that answers with every visual token (no scorer)."""
    return FlexSelectPipeline(
        adapter, None, SelectionConfig(budget=adapter.max_positions), max_new_tokens=MAX_NEW_TOKENS
    )


def _summary(hits: dict[str, list[bool]]) -> dict[str, Any]:
    kinds = {k: {"accuracy": round(sum(v) / len(v), 4), "n": len(v)} for k, v in sorted(hits.items())}
    n = sum(len(v) for v in hits.values())
    return {"kinds": kinds, "accuracy": round(sum(sum(v) for v in hits.values()) / max(1, n), 4), "n": n}


def clip_items(adapter: VideoLLMAdapter, *, n: int, frames: int, seed: int = CLIP_SEED) -> list[Labelled]:
    """Held-out clips at the model's frame side (plain clock, every token)."""
    side = int(adapter.processor.video_processor.size["longest_edge"] ** 0.5)
    config = ToyDataConfig(frame_side=side, kinds=QUESTION_KINDS, token_targets=False)
    data = ToyData(config, ToyTextCodec(adapter.processor), 0, seed=seed)
    return data.heldout(n, frames, seed=seed)


def evaluate_clips(adapter: VideoLLMAdapter, items: list[Labelled]) -> dict[str, Any]:
    """Per-kind accuracy of in-memory clips answered through the pipeline."""
    pipeline = all_tokens(adapter)
    hits: dict[str, list[bool]] = defaultdict(list)
    for item in items:
        ex = item.example
        hits[item.kind].append(pipeline.answer(ex.frames, ex.times, ex.question).answer == ex.answer)
    return _summary(hits)


def video_cases(
    directory: Path,
    *,
    n: int,
    frames: int,
    size: int,
    kinds: tuple[str, ...] = QUESTION_KINDS,
    seed: int = VIDEO_SEED,
) -> list[NeedleCase]:
    """Write `n` held-out world videos (one question each, kinds in turn) and return their cases."""
    return write_cases(directory, WorldVideos(frames=frames, size=size), count=n, seed=seed, kinds=kinds)


def evaluate_videos(adapter: VideoLLMAdapter, cases: list[NeedleCase]) -> dict[str, Any]:
    """Per-kind accuracy of mp4 cases decoded with `sample_uniform` and answered through the pipeline."""
    pipeline = all_tokens(adapter)
    hits: dict[str, list[bool]] = defaultdict(list)
    for case in cases:
        frames, times = decode(case)
        answer = pipeline.answer(frames, times, case.question.question).answer
        hits[case.question.kind].append(answer == case.question.answer)
    return _summary(hits)


def first_correct(adapter: VideoLLMAdapter, items: list[Labelled]) -> dict[str, int]:
    """Index of the first item of each kind the model answers right (to pin test clips)."""
    pipeline = all_tokens(adapter)
    found: dict[str, int] = {}
    for i, item in enumerate(items):
        ex = item.example
        if item.kind not in found and pipeline.answer(ex.frames, ex.times, ex.question).answer == ex.answer:
            found[item.kind] = i
    return found
