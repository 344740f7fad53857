"""Training and held-out examples for the toy model, drawn from the synthetic world's clip sampler.

Every batch is a pure function of (seed, step). Augmentations make short training clips look like what
the model meets on long videos: a stretched clock (frames far apart, so temporal positions span as much as
a long video's do) and dropped visual tokens with the question's evidence kept (what a FlexSelect or random
selection hands the model, at the original positions).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from flexselect.toy.batch import IGNORE, ToyBatch, ToyExample, ToyTextCodec, collate
from streams.synth import COLOR_NAMES, QUADRANTS, SHAPES, ClipSampler
from streams.synth.clips import Clip
from streams.synth.layout import third_of

CELL = 28  # one merged Qwen2.5-VL token covers 28x28 pixels
TEMPORAL_PATCH = 2
# Per-token auxiliary attributes of a 56 px clip: colour and shape of the needle in the token's cell (0 when
# there is none), and the token's row and column.
TOKEN_CLASSES = (len(COLOR_NAMES) + 1, len(SHAPES) + 1, 2, 2)
# What the question rows must read off the evidence: colour, shape, row, column and third of the clip.
EVIDENCE_CLASSES = (len(COLOR_NAMES) + 1, len(SHAPES) + 1, 2, 2, 3)


@dataclass(frozen=True)
class ToyDataConfig:
    """What the training clips look like.

    Attributes:
        frame_side: clip frames are this many pixels square (the model's frame side).
        kinds: question kinds asked, drawn uniformly from this list (repeat a kind to ask it more often).
        lengths, length_weights: clip lengths in frames and how often each is drawn.
        frames_per_batch: frames per training batch; batch size = frames_per_batch // length.
        fps: the clips' nominal frame rate.
        stretch_prob, max_stretch: how often, and by up to what factor (log-uniform), frames are spread
            further apart in time than 1 / fps.
        drop_prob, min_keep: how often visual tokens are dropped, keeping a fraction drawn log-uniformly
            from [min_keep, 1] of the non-evidence tokens.
        max_needles, needle_frames, distractors: passed to `ClipSampler`.
        curriculum: (first step, most needles) pairs: from that training step on, clips hold at most that
            many needles (never more than `max_needles`). One needle teaches where to look; more needles
            then teach which one the question means.
        token_targets: attach per-token colour, shape, row and column classes (for the auxiliary loss).
    """

    frame_side: int = 56
    kinds: tuple[str, ...] = ("color", "shape", "place", "place", "count", "count", "when")
    lengths: tuple[int, ...] = (8, 16, 32, 64)
    length_weights: tuple[float, ...] = (0.2, 0.4, 0.25, 0.15)
    frames_per_batch: int = 512
    fps: float = 2.0
    stretch_prob: float = 0.5
    max_stretch: float = 32.0
    drop_prob: float = 0.35
    min_keep: float = 0.02
    max_needles: int = 4
    needle_frames: tuple[int, int] = (1, 4)
    distractors: tuple[int, int] = (1, 2)
    curriculum: tuple[tuple[int, int], ...] = ((0, 1), (500, 2), (1000, 4))
    token_targets: bool = True

    def __post_init__(self) -> None:
        if len(self.lengths) != len(self.length_weights) or not self.lengths:
            raise ValueError(f"lengths {self.lengths} and length_weights {self.length_weights} must pair up")
        if any(n < 2 or n % TEMPORAL_PATCH or n > self.frames_per_batch for n in self.lengths):
            raise ValueError(f"lengths must be even, >= 2 and <= frames_per_batch, got {self.lengths}")
        if not 0 < self.min_keep <= 1 or self.max_stretch < 1:
            raise ValueError(
                f"need 0 < min_keep <= 1 and max_stretch >= 1, got {self.min_keep}, {self.max_stretch}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists, also inside the curriculum)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToyDataConfig:
        """Inverse of `to_dict`."""
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        fields["curriculum"] = tuple(tuple(pair) for pair in fields.get("curriculum", ()))
        return cls(**fields)

    def needles_at(self, step: int | None) -> int:
        """Most needles per clip at training `step` (None: held-out clips, `max_needles`)."""
        most = self.max_needles
        if step is not None:
            for start, needles in self.curriculum:
                if step >= start:
                    most = min(self.max_needles, needles)
        return most


@dataclass
class Labelled:
    """An example with its question kind (for per-kind accuracy)."""

    example: ToyExample
    kind: str


def token_targets(clip: Clip) -> np.ndarray:
    """(N, 4) int64 per token: colour + 1, shape + 1 of its needle (else 0), row, column.

    Targets of the auxiliary probe; rows and columns are 28 px cells.
    """
    t, h, w = clip.frames.shape[:3]
    out = np.zeros((-(-t // TEMPORAL_PATCH), h // CELL, w // CELL, 4), dtype=np.int64)
    out[..., 2] = np.arange(h // CELL)[None, :, None]
    out[..., 3] = np.arange(w // CELL)[None, None, :]
    for n in clip.needles:
        x, y, bw, bh = n.box
        region = out[
            n.first_frame // TEMPORAL_PATCH : n.last_frame // TEMPORAL_PATCH + 1,
            y // CELL : (y + bh - 1) // CELL + 1,
            x // CELL : (x + bw - 1) // CELL + 1,
        ]
        region[..., 0] = COLOR_NAMES.index(n.color) + 1
        region[..., 1] = SHAPES.index(n.shape) + 1
    return out.reshape(-1, 4)


def evidence_targets(clip: Clip) -> np.ndarray:
    """(5,) int64 colour + 1, shape + 1, row, column and third of the clip of the question's needle.

    A count question is about several needles that share only their shape: the rest is IGNORE.
    """
    n = next(m for m in clip.needles if m.id == clip.needle_ids[0])
    t = clip.frames.shape[0]
    if clip.kind == "count":
        return np.array([IGNORE, SHAPES.index(n.shape) + 1, IGNORE, IGNORE, IGNORE], dtype=np.int64)
    quadrant = QUADRANTS.index(n.quadrant)  # 2 * bottom + right
    colour, shape = COLOR_NAMES.index(n.color) + 1, SHAPES.index(n.shape) + 1
    return np.array([colour, shape, quadrant // 2, quadrant % 2, third_of(n.first_frame, t)], dtype=np.int64)


class ToyData:
    """Seeded training batches and held-out sets of toy examples."""

    def __init__(
        self, config: ToyDataConfig, codec: ToyTextCodec, tokens_per_second: float, seed: int
    ) -> None:
        self.config = config
        self.codec = codec
        self.tokens_per_second = tokens_per_second
        self.seed = seed
        self._samplers: dict[tuple[int, int], ClipSampler] = {}

    def sampler(self, frames: int, needles: int) -> ClipSampler:
        """The (cached) clip sampler for clips of `frames` frames with at most `needles` needles."""
        if (frames, needles) not in self._samplers:
            c = self.config
            self._samplers[frames, needles] = ClipSampler(
                frames,
                (c.frame_side, c.frame_side),
                kinds=c.kinds,
                cell=CELL,
                max_needles=needles,
                needle_frames=c.needle_frames,
                distractors=c.distractors,
                fps=c.fps,
            )
        return self._samplers[frames, needles]

    def example(
        self, rng: np.random.Generator, frames: int, *, augment: bool, needles: int | None = None
    ) -> Labelled:
        """One clip with its question; augmented (stretched clock, dropped tokens) when `augment`."""
        c = self.config
        clip = self.sampler(frames, needles or c.max_needles)(rng)
        spacing = 1.0 / c.fps
        keep = None
        if augment and rng.random() < c.stretch_prob:
            spacing *= math.exp(rng.uniform(0.0, math.log(c.max_stretch)))
        if augment and rng.random() < c.drop_prob:
            keep = self._keep_mask(rng, clip)
        times = np.arange(frames, dtype=np.float64) * spacing
        targets = token_targets(clip) if c.token_targets else None
        evidence = clip.token_mask(cell=CELL, temporal_patch=TEMPORAL_PATCH, evidence_only=True).ravel()
        read = evidence_targets(clip) if c.token_targets else None
        example = ToyExample(clip.frames, times, clip.question, clip.answer, keep, targets, evidence, read)
        return Labelled(example, clip.kind)

    def _keep_mask(self, rng: np.random.Generator, clip: Clip) -> np.ndarray:
        evidence = clip.token_mask(cell=CELL, temporal_patch=TEMPORAL_PATCH, evidence_only=True).ravel()
        fraction = math.exp(rng.uniform(math.log(self.config.min_keep), 0.0))
        return evidence | (rng.random(evidence.shape[0]) < fraction)

    def batch_at(self, step: int) -> ToyBatch:
        """The training batch of `step`: one clip length, augmented, keyed by (seed, step)."""
        rng = np.random.default_rng([self.seed, step])
        c = self.config
        weights = np.asarray(c.length_weights, dtype=np.float64)
        frames = int(rng.choice(c.lengths, p=weights / weights.sum()))
        examples = [
            self.example(rng, frames, augment=True).example for _ in range(c.frames_per_batch // frames)
        ]
        return collate(examples, self.codec, self.tokens_per_second)

    def heldout(self, n: int, frames: int, *, seed: int, augment: bool = False) -> list[Labelled]:
        """`n` examples from a stream keyed by `seed` (disjoint from training streams keyed by step)."""
        rng = np.random.default_rng([seed, 1_000_003, frames])
        return [self.example(rng, frames, augment=augment) for _ in range(n)]
