"""Where selector training groups come from: the synthetic world's clips, world videos, or annotation files.

Each source yields `Example`s (frames, their times, one question), indexed so that example `i` is always
the same (a pure function of the source and `i`), which keeps the on-disk teacher cache and resumed
training consistent. Annotation files follow LLaVA-Video-178K: a JSON list (or JSON lines) of
`{"video": path, "conversations": [{"from": "human", "value": "<image>\\nQ"},
{"from": "gpt", "value": "A"}]}`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streams.sampling import sample_uniform
from streams.synth import QUESTION_KINDS, ClipSampler

CELL = 28
MEDIA_TAG = re.compile(r"<(image|video)>\s*")


@dataclass
class Example:
    """One clip and one question about it."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    times: np.ndarray  # (T,) seconds
    question: str


class ExampleSource(Protocol):
    """Examples by index (example i never changes)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Example: ...

    def describe(self) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------------ world clips
@dataclass(frozen=True)
class WorldClips:
    """In-memory clips of the synthetic world with one unambiguous question each (`streams.synth`).

    Attributes:
        count: examples in the source.
        seed: keys the stream (held-out sets use another seed).
        lengths: clip lengths in frames, drawn uniformly per example.
        size: frame side in pixels (a multiple of 28).
        kinds: question kinds asked.
        fps: nominal frame rate.
        max_needles: needles per clip (the question is about one or some of them).
    """

    count: int
    seed: int = 0
    lengths: tuple[int, ...] = (16, 32, 64)
    size: int = 56
    kinds: tuple[str, ...] = QUESTION_KINDS
    fps: float = 2.0
    max_needles: int = 4

    def __post_init__(self) -> None:
        if self.count < 0 or not self.lengths or min(self.lengths) < 4:
            raise ValueError(f"need count >= 0 and clip lengths of at least 4 frames, got {self}")
        if self.size < CELL or self.size % CELL:
            raise ValueError(f"size must be a positive multiple of {CELL}, got {self.size}")

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Example:
        if not 0 <= i < self.count:
            raise IndexError(f"example {i} is outside 0..{self.count - 1}")
        rng = np.random.default_rng([self.seed, 4242, i])
        frames = int(self.lengths[int(rng.integers(len(self.lengths)))])
        clip = _sampler(frames, self.size, self.kinds, self.fps, self.max_needles)(rng)
        return Example(clip.frames, np.arange(frames, dtype=np.float64) / self.fps, clip.question)

    def describe(self) -> dict[str, Any]:
        """What fixes the examples (not their count: example i is the same in a longer source)."""
        return {"source": "world-clips", **{k: v for k, v in asdict(self).items() if k != "count"}}


_SAMPLERS: dict[tuple[Any, ...], ClipSampler] = {}


def _sampler(frames: int, size: int, kinds: tuple[str, ...], fps: float, max_needles: int) -> ClipSampler:
    key = (frames, size, kinds, fps, max_needles)
    if key not in _SAMPLERS:
        _SAMPLERS[key] = ClipSampler(
            frames, (size, size), kinds=kinds, cell=CELL, max_needles=max_needles, fps=fps
        )
    return _SAMPLERS[key]


# -------------------------------------------------------------------------------- annotation files
@dataclass(frozen=True)
class Annotation:
    """One question about one video file."""

    video: Path
    question: str
    answer: str | None


def read_annotations(
    path: Path, *, video_root: Path | None = None, first_only: bool = True
) -> list[Annotation]:
    """Questions from a LLaVA-Video-178K-style annotation file (JSON list or JSON lines).

    Args:
        path: the annotation file.
        video_root: directory relative video paths start from (default: the file's directory).
        first_only: keep only the first question of each conversation (as the paper's LLaVA data does).

    Raises:
        ValueError: the file is not in that format (the message names the entry).
    """
    text = path.read_text()
    try:
        entries = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(x) for x in text.splitlines() if x.strip()]
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is neither a JSON list nor JSON lines: {exc}") from exc
    root = video_root or path.parent
    out: list[Annotation] = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "video" not in entry or "conversations" not in entry:
            raise ValueError(f"{path}: entry {n} needs 'video' and 'conversations', got {str(entry)[:80]!r}")
        video = Path(entry["video"])
        video = video if video.is_absolute() else root / video
        turns = entry["conversations"]
        for t, turn in enumerate(turns):
            if turn.get("from") != "human":
                continue
            question = MEDIA_TAG.sub("", str(turn.get("value", ""))).strip()
            if not question:
                continue
            reply = turns[t + 1] if t + 1 < len(turns) and turns[t + 1].get("from") == "gpt" else None
            out.append(Annotation(video, question, None if reply is None else str(reply.get("value", ""))))
            if first_only:
                break
    return out


def write_annotations(path: Path, items: list[Annotation]) -> None:
    """Write annotations in the LLaVA-Video-178K layout (video paths relative to the file when possible)."""
    entries = []
    for item in items:
        try:
            video = str(item.video.resolve().relative_to(path.parent.resolve()))
        except ValueError:
            video = str(item.video)
        turns = [{"from": "human", "value": f"<image>\n{item.question}"}]
        if item.answer is not None:
            turns.append({"from": "gpt", "value": item.answer})
        entries.append({"video": video, "conversations": turns})
    path.write_text(json.dumps(entries, indent=1) + "\n")


@dataclass(frozen=True)
class AnnotatedVideos:
    """Examples from annotation entries: `frames` frames sampled uniformly from each video."""

    items: tuple[Annotation, ...]
    frames: int = 64
    max_side: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Example:
        item = self.items[i]
        sample = sample_uniform(item.video, self.frames, max_side=self.max_side)
        return Example(sample.frames, sample.times, item.question)

    def describe(self) -> dict[str, Any]:
        return {
            "source": "annotations",
            "videos": [str(a.video) for a in self.items[:3]],
            "count": len(self.items),
            "frames": self.frames,
        }
