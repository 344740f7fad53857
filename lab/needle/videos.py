"""Needle videos on disk: seeded synthetic worlds written as mp4 + ground truth, or a user's own files.

A case is one question about one video whose answer and evidence times are known. Videos are always read
back through `streams.sampling.sample_uniform`, the path the product uses, so H.264 and resizing count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.sampling import sample_uniform
from streams.synth import (
    GroundTruth,
    Question,
    WorldConfig,
    generate_world,
    truth_path,
    video_questions,
    write_world,
)

MAX_TRIES = 50  # worlds tried per case to find a question of the wanted kind


@dataclass(frozen=True)
class NeedleCase:
    """One question about one video file, with the time spans that hold its evidence."""

    video: Path
    question: Question
    spans: tuple[tuple[float, float], ...]  # (start_s, end_s) of each needle the question is about
    frame_count: int  # frames in the file
    boxes: tuple[tuple[int, int, int, int], ...] = ()  # (x, y, w, h) px of each needle, as `spans`
    size: tuple[int, int] = (0, 0)  # (width, height) of the file's frames

    def needle_frames(self, times: np.ndarray) -> np.ndarray:
        """Indices of the sampled frames (at `times`, seconds) that show the evidence."""
        eps = 1e-3
        hit = np.zeros(len(times), dtype=bool)
        for start, end in self.spans:
            hit |= (times >= start - eps) & (times < end - eps)
        return np.flatnonzero(hit)

    def needle_frames_each(self, times: np.ndarray) -> list[np.ndarray]:
        """Per needle (as `boxes`), the indices of the sampled frames that show it."""
        eps = 1e-3
        return [np.flatnonzero((times >= a - eps) & (times < b - eps)) for a, b in self.spans]


@dataclass(frozen=True)
class WorldVideos:
    """How generated needle videos look.

    Attributes:
        frames: frames per video (seconds = frames / fps).
        size: frame side in pixels (a multiple of 28).
        needles: (min, max) needle events per video, inclusive.
        fps: frame rate.
        max_needle_frames: longest needle event in frames (the shortest is one frame).
        distractors: grey distractors on screen at once.
    """

    frames: int
    size: int = 56
    needles: tuple[int, int] = (1, 4)
    fps: float = 2.0
    max_needle_frames: int = 4
    distractors: int = 2

    def world(self, seed: int, needles: int) -> WorldConfig:
        """The world of one video."""
        return WorldConfig(
            seconds=self.frames / self.fps,
            fps=self.fps,
            width=self.size,
            height=self.size,
            needles=needles,
            seed=seed,
            min_needle_seconds=0.0,
            max_needle_seconds=self.max_needle_frames / self.fps,
            distractors=self.distractors,
        )


def cases_from_truth(
    video: Path, truth: GroundTruth, kinds: tuple[str, ...] | None = None
) -> list[NeedleCase]:
    """Every question of a ground truth (optionally of `kinds`) as cases."""
    needles = {n.id: n for n in truth.needles}
    return [
        NeedleCase(
            video=video,
            question=q,
            spans=tuple((needles[i].start_s, needles[i].end_s) for i in q.needle_ids),
            frame_count=truth.frame_count,
            boxes=tuple(tuple(needles[i].box) for i in q.needle_ids),  # type: ignore[misc]
            size=(truth.config.width, truth.config.height),
        )
        for q in truth.questions
        if kinds is None or q.kind in kinds
    ]


def write_cases(
    directory: Path, spec: WorldVideos, *, count: int, seed: int, kinds: tuple[str, ...]
) -> list[NeedleCase]:
    """Write `count` videos into `directory`, one question each, kinds taken in turn (seeded, repeatable).

    Video i uses the first world seed from `seed + i * MAX_TRIES` whose questions include the wanted
    kind; the question is drawn among those of that kind.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        for attempt in range(MAX_TRIES):
            world_seed = seed + i * MAX_TRIES + attempt
            rng = np.random.default_rng([world_seed, 7])
            config = spec.world(world_seed, int(rng.integers(spec.needles[0], spec.needles[1] + 1)))
            world = generate_world(config)
            asked = video_questions(world.needles, world.frame_count, kinds=(kind,))
            if asked:
                break
        else:
            raise RuntimeError(f"no {kind!r} question in {MAX_TRIES} worlds of {spec}; allow more needles")
        path = directory / f"needle-{spec.frames}f-{i:04d}.mp4"
        truth = write_world(world, path)
        chosen = asked[int(rng.integers(len(asked)))]
        question = next(q for q in truth.questions if q.question == chosen.question)
        cases.extend(c for c in cases_from_truth(path, truth) if c.question.id == question.id)
    return cases


def user_cases(videos: list[Path], kinds: tuple[str, ...] | None = None) -> list[NeedleCase]:
    """Cases from a user's videos, each with ground truth in the world's JSON format beside it.

    Raises:
        FileNotFoundError: a video or its JSON is missing.
    """
    cases = []
    for video in videos:
        if not video.is_file():
            raise FileNotFoundError(f"no such video: {video}")
        if not truth_path(video).is_file():
            raise FileNotFoundError(f"{video} has no ground truth at {truth_path(video)}")
        cases.extend(cases_from_truth(video, GroundTruth.load(truth_path(video)), kinds))
    return cases


def decode(case: NeedleCase, frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(frames (n, H, W, 3) uint8, times (n,) s) of the case's video: all frames, or `frames` uniformly."""
    sample = sample_uniform(case.video, frames or case.frame_count)
    return sample.frames, sample.times
