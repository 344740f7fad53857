"""The ground truth of a synthetic video (config, needle events, questions) and its JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.synth.questions import Question, video_questions
from streams.synth.world import Needle, World, WorldConfig

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GroundTruth:
    """What a synthetic video contains; written as JSON beside its mp4."""

    config: WorldConfig
    frame_count: int
    needles: tuple[Needle, ...]
    questions: tuple[Question, ...]

    @property
    def duration_s(self) -> float:
        """Length of the video in seconds (frame_count / fps)."""
        return self.frame_count / self.config.fps

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the top-level seed/fps/size/duration repeat the config for convenience."""
        cfg = self.config
        return {
            "version": SCHEMA_VERSION,
            "seed": cfg.seed,
            "fps": cfg.fps,
            "width": cfg.width,
            "height": cfg.height,
            "duration_s": self.duration_s,
            "frame_count": self.frame_count,
            "config": cfg.to_dict(),
            "needles": [n.to_dict() for n in self.needles],
            "questions": [q.to_dict() for q in self.questions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundTruth:
        """Inverse of `to_dict`."""
        if data.get("version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported ground-truth version {data.get('version')!r}")
        return cls(
            config=WorldConfig.from_dict(data["config"]),
            frame_count=int(data["frame_count"]),
            needles=tuple(Needle.from_dict(n) for n in data["needles"]),
            questions=tuple(Question.from_dict(q) for q in data["questions"]),
        )

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        """Parse `to_json` output."""
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write the JSON to `path`."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        """Read a file written by `save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def ground_truth(world: World) -> GroundTruth:
    """The ground truth of `world`, with every unambiguous question about its needles."""
    return GroundTruth(
        config=world.config,
        frame_count=world.frame_count,
        needles=world.needles,
        questions=tuple(video_questions(world.needles, world.frame_count)),
    )
