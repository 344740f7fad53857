"""Fast in-memory training clips: a few frames of the world with one question about its needles.

Generation is vectorised numpy (no video files); a 16-frame 112x112 clip takes about a millisecond.
Every clip is built so that its question is unambiguous: needle colours are distinct within a clip, the
shape asked about in a `color` question occurs once, and a `when` target lies inside one third.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from streams.synth.layout import Box, boxes_overlap, needle_sizes, random_box, third_of
from streams.synth.questions import ask
from streams.synth.render import PALETTE, ShapeMasks, TextureMaker, add_noise, colorize
from streams.synth.vocab import COLOR_NAMES, COUNT_WORDS, QUADRANTS, QUESTION_KINDS, SHAPES
from streams.synth.world import DARK_GREYS, LIGHT_GREYS, Needle, bounce, make_needle

MAX_LAYOUT_TRIES = 1000


class Clip(NamedTuple):
    """A training clip: frames, one question with its answer, and the needles drawn in it."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    question: str
    answer: str
    kind: str
    needles: tuple[Needle, ...]
    needle_ids: tuple[int, ...]  # the needles the question is about (its evidence)

    def mask(self, evidence_only: bool = False) -> np.ndarray:
        """(T, H, W) bool: pixels of needle boxes in the frames they are shown."""
        t, h, w = self.frames.shape[:3]
        out = np.zeros((t, h, w), dtype=bool)
        for n in self._chosen(evidence_only):
            x, y, bw, bh = n.box
            out[n.first_frame : n.last_frame + 1, y : y + bh, x : x + bw] = True
        return out

    def token_mask(self, cell: int = 28, temporal_patch: int = 2, evidence_only: bool = False) -> np.ndarray:
        """(ceil(T / temporal_patch), ceil(H / cell), ceil(W / cell)) bool: tokens touching a needle box."""
        t, h, w = self.frames.shape[:3]
        out = np.zeros((-(-t // temporal_patch), -(-h // cell), -(-w // cell)), dtype=bool)
        for n in self._chosen(evidence_only):
            x, y, bw, bh = n.box
            out[
                n.first_frame // temporal_patch : n.last_frame // temporal_patch + 1,
                y // cell : (y + bh - 1) // cell + 1,
                x // cell : (x + bw - 1) // cell + 1,
            ] = True
        return out

    def _chosen(self, evidence_only: bool) -> list[Needle]:
        return [n for n in self.needles if not evidence_only or n.id in self.needle_ids]


class ClipSampler:
    """Samples `Clip`s of a fixed frame count and size; reuse one sampler for speed (it caches masks)."""

    def __init__(
        self,
        frames: int = 16,
        size: tuple[int, int] = (112, 112),
        *,
        kinds: Sequence[str] = QUESTION_KINDS,
        cell: int | None = 28,
        needle_cells: Sequence[int] = (1, 2),
        needle_px: tuple[int, int] = (16, 56),
        max_needles: int = 4,
        needle_frames: tuple[int, int] = (1, 4),
        distractors: tuple[int, int] = (1, 2),
        noise: float = 4.0,
        fps: float = 2.0,
    ) -> None:
        """`size` is (H, W); `needle_frames` and `distractors` are inclusive (min, max) ranges."""
        height, width = size
        if frames < 1 or height < 1 or width < 1:
            raise ValueError(f"need frames >= 1 and a positive size, got {frames} frames of {size}")
        if cell is not None and (height % cell or width % cell):
            raise ValueError(f"size {size} is not a multiple of the {cell}px cell")
        unknown = set(kinds) - set(QUESTION_KINDS)
        if not kinds or unknown:
            raise ValueError(f"kinds must be a non-empty subset of {QUESTION_KINDS}, got {kinds}")
        if not 1 <= max_needles <= len(COLOR_NAMES):
            raise ValueError(f"max_needles must be in 1..{len(COLOR_NAMES)}")
        if not 1 <= needle_frames[0] <= needle_frames[1]:
            raise ValueError("need 1 <= needle_frames[0] <= needle_frames[1]")
        if "when" in kinds and frames < 3:
            raise ValueError("`when` questions need clips of at least 3 frames")
        self.frames, self.height, self.width = frames, height, width
        self.kinds = tuple(kinds)
        self.cell = cell
        self.sizes = needle_sizes(height, width, cell, needle_cells, needle_px)
        if not self.sizes:
            raise ValueError(f"no needle size fits a quadrant of {width}x{height}")
        self.max_needles = max_needles
        self.needle_frames = (needle_frames[0], min(needle_frames[1], frames))
        self.distractors = distractors
        self.noise = noise
        self.fps = fps
        self._textures = TextureMaker(height, width)
        self._masks = ShapeMasks()
        self._time = np.arange(frames, dtype=np.float32)
        base = cell or 28
        self._distractor_sizes = (max(1, base // 2), max(1, min(3 * base // 2, min(height, width) // 2)))

    def __call__(self, rng: np.random.Generator) -> Clip:
        """One random clip with one question of a random kind."""
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        for _ in range(MAX_LAYOUT_TRIES):
            laid = self._layout(rng, kind)
            if laid is not None:
                break
        else:
            raise RuntimeError(f"cannot fit {self.max_needles} needles in {self.frames} frames; use fewer")
        needles, about = laid
        q = ask(kind, about, self.frames)
        return Clip(self._render(rng, needles), q.question, q.answer, kind, needles, q.needle_ids)

    def _layout(self, rng: np.random.Generator, kind: str) -> tuple[tuple[Needle, ...], list[Needle]] | None:
        """Needles that make a `kind` question unambiguous, or None when they did not fit (retry)."""
        n_shapes = len(SHAPES)
        if kind == "count":
            hits = int(rng.integers(1, min(len(COUNT_WORDS), self.max_needles) + 1))
            count = hits + int(rng.integers(0, self.max_needles - hits + 1))
        else:
            hits, count = 1, int(rng.integers(1, self.max_needles + 1))
        colors = rng.choice(len(COLOR_NAMES), size=count, replace=False)
        shapes = rng.integers(0, n_shapes, size=count)
        if kind in ("count", "color"):  # needles 0..hits-1 share the target shape, the rest differ from it
            target = shapes[0]
            shapes[:hits] = target
            shapes[hits:] = (target + rng.integers(1, n_shapes, size=count - hits)) % n_shapes
        placed: list[tuple[int, int, Box]] = []
        needles = []
        lo, hi = self.needle_frames
        for i in range(count):
            dur = int(rng.integers(lo, hi + 1))
            if kind == "when" and i == 0:
                third = int(rng.integers(3))
                third_frames = [f for f in range(self.frames) if third_of(f, self.frames) == third]
                dur = min(dur, len(third_frames))
                start = third_frames[0] + int(rng.integers(0, len(third_frames) - dur + 1))
            else:
                start = int(rng.integers(0, self.frames - dur + 1))
            end = start + dur - 1
            for _ in range(8):
                quadrant = int(rng.integers(4))
                size = self.sizes[int(rng.integers(len(self.sizes)))]
                box = random_box(rng, self.height, self.width, size, quadrant, self.cell)
                if not any(s <= end and start <= e and boxes_overlap(box, b) for s, e, b in placed):
                    break
            else:
                return None
            placed.append((start, end, box))
            needles.append(
                make_needle(
                    i,
                    COLOR_NAMES[colors[i]],
                    SHAPES[shapes[i]],
                    box,
                    start,
                    end,
                    self.fps,
                    self.cell,
                    QUADRANTS[quadrant],
                )
            )
        return tuple(needles), needles[:hits]

    def _render(self, rng: np.random.Generator, needles: tuple[Needle, ...]) -> np.ndarray:
        t, h, w = self.frames, self.height, self.width
        (g0, c0), (g1, c1) = self._textures(rng), self._textures(rng)
        a0 = rng.uniform(0.0, 0.7)
        alpha = (a0 + rng.uniform(0.0, 0.3) * self._time / max(t - 1, 1)).astype(np.float32)
        grey = np.multiply(alpha[:, None, None], g1 - g0)
        grey += g0
        add_noise(grey, rng, self.noise)
        for _ in range(int(rng.integers(self.distractors[0], self.distractors[1] + 1))):
            size = int(rng.integers(self._distractor_sizes[0], self._distractor_sizes[1] + 1))
            mask = self._masks(int(rng.integers(len(SHAPES))), size)
            level = rng.uniform(*(DARK_GREYS if rng.random() < 0.5 else LIGHT_GREYS))
            x0, y0 = rng.uniform(0, w - size), rng.uniform(0, h - size)
            vx, vy = rng.uniform(-6.0, 6.0, size=2)
            xs = bounce(x0 + vx * self._time, np.int64(w - size)).tolist()
            ys = bounce(y0 + vy * self._time, np.int64(h - size)).tolist()
            for f in range(t):
                grey[f, ys[f] : ys[f] + size, xs[f] : xs[f] + size][mask] = level
        gains = c0 + alpha[:, None] * (c1 - c0)
        rgb = colorize(grey, gains)
        for n in needles:
            x, y, bw, bh = n.box
            region = rgb[n.first_frame : n.last_frame + 1, y : y + bh, x : x + bw]
            region[:, self._masks(SHAPES.index(n.shape), bw)] = PALETTE[COLOR_NAMES.index(n.color)]
        return rgb


def sample_clip(
    rng: np.random.Generator, frames: int = 16, size: tuple[int, int] = (112, 112), **options
) -> Clip:
    """One clip from a fresh `ClipSampler(frames, size, **options)`; build a sampler once for many clips."""
    return ClipSampler(frames, size, **options)(rng)
