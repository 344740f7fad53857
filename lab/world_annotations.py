"""World videos as selector annotations: the seeded needle videos, in the selector's annotation format.

A bridge module, so that the selector's training (`lab.selector`) imports nothing of `lab.needle`.
"""

from __future__ import annotations

from pathlib import Path

from lab.needle.videos import WorldVideos, write_cases
from lab.selector.data import Annotation


def world_video_annotations(
    directory: Path, *, count: int, frames: int, size: int, seed: int, kinds: tuple[str, ...]
) -> list[Annotation]:
    """Write `count` seeded world videos (mp4 + truth) into `directory`, one question each, as annotations."""
    cases = write_cases(directory, WorldVideos(frames=frames, size=size), count=count, seed=seed, kinds=kinds)
    return [Annotation(c.video, c.question.question, c.question.answer) for c in cases]
