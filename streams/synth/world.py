"""The scene specification of a synthetic video: needle events, distractor tracks and background scenes.

Everything is a pure function of a `WorldConfig` (which includes the seed). Independent random streams
are keyed by `(seed, stream)` so that, for example, changing the number of distractors leaves the needles
unchanged. Rendering lives in `streams.synth.render`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from streams.synth.layout import Box, needle_sizes, random_box
from streams.synth.vocab import COLOR_NAMES, QUADRANTS, SHAPES

# Keys of the independent random streams derived from the seed.
STREAM_NEEDLES, STREAM_DISTRACTORS, STREAM_SCENES, STREAM_KEYFRAME, STREAM_NOISE = range(5)

DISTRACTOR_LIFE_S = (3.0, 20.0)  # how long one grey distractor stays on screen
DISTRACTOR_GAP_S = (0.0, 4.0)  # pause before the next distractor in the same lane
DISTRACTOR_SPEED_PX_S = (4.0, 40.0)
DARK_GREYS, LIGHT_GREYS = (25.0, 80.0), (175.0, 230.0)


@dataclass(frozen=True, slots=True)
class Needle:
    """One needle event: a saturated `color` `shape` in `box` during frames first_frame..last_frame."""

    id: int
    color: str
    shape: str
    box: Box  # (x, y, w, h) in pixels
    quadrant: str
    first_frame: int
    last_frame: int  # inclusive
    start_s: float  # first_frame / fps
    end_s: float  # (last_frame + 1) / fps
    cell: tuple[int, int] | None = None  # (row, col) of the top-left grid cell when grid-aligned

    @property
    def frames(self) -> range:
        """The frame indices in which the needle is drawn."""
        return range(self.first_frame, self.last_frame + 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["box"] = list(self.box)
        out["cell"] = None if self.cell is None else list(self.cell)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Needle:
        """Inverse of `to_dict`."""
        cell = data.get("cell")
        return cls(
            id=int(data["id"]),
            color=str(data["color"]),
            shape=str(data["shape"]),
            box=tuple(int(v) for v in data["box"]),  # type: ignore[arg-type]
            quadrant=str(data["quadrant"]),
            first_frame=int(data["first_frame"]),
            last_frame=int(data["last_frame"]),
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            cell=None if cell is None else (int(cell[0]), int(cell[1])),
        )


def make_needle(
    id: int,
    color: str,
    shape: str,
    box: Box,
    first: int,
    last: int,
    fps: float,
    cell: int | None,
    quadrant: str,
) -> Needle:
    """A `Needle` with its times and grid cell filled in from `fps` and `cell`."""
    grid = None if cell is None else (box[1] // cell, box[0] // cell)
    return Needle(id, color, shape, box, quadrant, first, last, first / fps, (last + 1) / fps, grid)


@dataclass(frozen=True)
class WorldConfig:
    """All the parameters of a synthetic video; the same config always yields the same video."""

    seconds: float
    fps: float = 2.0
    width: int = 224
    height: int = 224
    needles: int = 4
    seed: int = 0
    cell: int | None = 28  # needle grid in pixels; None places needles freely
    needle_cells: tuple[int, ...] = (1, 2)  # needle sizes in cells (when `cell` is set)
    needle_px: tuple[int, int] = (16, 56)  # needle size range in pixels (when `cell` is None)
    min_needle_seconds: float = 0.0  # shortest needle; always at least one frame
    max_needle_seconds: float = 3.0
    distractors: int = 3  # grey distractors on screen at once (at most)
    scene_seconds: tuple[float, float] = (20.0, 60.0)  # how long the background takes to morph
    noise: float = 4.0  # amplitude of per-pixel noise in grey levels

    def __post_init__(self) -> None:
        for name in ("seconds", "fps", "min_needle_seconds", "max_needle_seconds", "noise"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"size must be positive, got {self.width}x{self.height}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.needles < 0 or self.distractors < 0:
            raise ValueError("needles and distractors must be >= 0")
        if self.cell is not None:
            if self.cell <= 0:
                raise ValueError(f"cell must be positive, got {self.cell}")
            if self.width % self.cell or self.height % self.cell:
                raise ValueError(
                    f"size {self.width}x{self.height} is not a multiple of the {self.cell}px cell"
                )
        if not 0 <= self.min_needle_seconds <= self.max_needle_seconds:
            raise ValueError("need 0 <= min_needle_seconds <= max_needle_seconds")
        if not 0 < self.scene_seconds[0] <= self.scene_seconds[1]:
            raise ValueError("need 0 < scene_seconds[0] <= scene_seconds[1]")
        if self.needles and not self.sizes:
            raise ValueError(f"no needle size fits a quadrant of {self.width}x{self.height}")
        if self.needles > self.frame_count:
            raise ValueError(f"{self.needles} needles do not fit in {self.frame_count} frames")

    @property
    def sizes(self) -> tuple[int, ...]:
        """Pixel sizes a needle may take in this frame size."""
        return tuple(needle_sizes(self.height, self.width, self.cell, self.needle_cells, self.needle_px))

    @property
    def frame_count(self) -> int:
        """Number of frames: seconds * fps, rounded, at least one."""
        return max(1, round(self.seconds * self.fps))

    @property
    def needle_frames(self) -> tuple[int, int]:
        """(shortest, longest) needle duration in frames."""
        lo = max(1, round(self.min_needle_seconds * self.fps))
        return lo, max(lo, round(self.max_needle_seconds * self.fps))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        """Inverse of `to_dict`."""
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kw)


@dataclass(frozen=True, eq=False)
class Distractors:
    """Grey distractor tracks, one row per track; each moves in a straight line and bounces off the edges."""

    start: np.ndarray  # (K,) first frame
    stop: np.ndarray  # (K,) one past the last frame
    shape: np.ndarray  # (K,) index into SHAPES
    size: np.ndarray  # (K,) side in pixels
    level: np.ndarray  # (K,) grey level
    x0: np.ndarray  # (K,) position at `start` (float pixels)
    y0: np.ndarray
    vx: np.ndarray  # (K,) velocity in pixels per frame
    vy: np.ndarray

    def active(self, frame: int) -> np.ndarray:
        """Indices of the tracks on screen in `frame`."""
        return np.flatnonzero((self.start <= frame) & (frame < self.stop))

    def positions(
        self, idx: np.ndarray, frame: int, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Integer top-left (x, y) of tracks `idx` in `frame`."""
        dt = frame - self.start[idx]
        return (
            bounce(self.x0[idx] + self.vx[idx] * dt, width - self.size[idx]),
            bounce(self.y0[idx] + self.vy[idx] * dt, height - self.size[idx]),
        )


def bounce(p: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Integer positions of points moving freely along `p`, reflected back and forth inside [0, span]."""
    span = np.maximum(span, 1)
    m = np.mod(p, 2 * span)
    return np.rint(span - np.abs(m - span)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class World:
    """A full synthetic video: its config, needle events, distractor tracks and background scene bounds."""

    config: WorldConfig
    needles: tuple[Needle, ...]
    distractors: Distractors
    scene_bounds: np.ndarray  # frames where the background passes a keyframe; last >= frame_count

    @property
    def frame_count(self) -> int:
        """Number of frames in the video."""
        return self.config.frame_count


def stream_rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    """The random generator of one keyed stream of a world."""
    return np.random.default_rng([seed, stream, *index])


def generate_world(config: WorldConfig) -> World:
    """Lay out needles, distractors and background scenes for `config`, deterministically."""
    return World(
        config=config,
        needles=_needles(stream_rng(config.seed, STREAM_NEEDLES), config),
        distractors=_distractors(stream_rng(config.seed, STREAM_DISTRACTORS), config),
        scene_bounds=_scene_bounds(stream_rng(config.seed, STREAM_SCENES), config),
    )


def _needles(rng: np.random.Generator, cfg: WorldConfig) -> tuple[Needle, ...]:
    count, frames = cfg.needles, cfg.frame_count
    if count == 0:
        return ()
    lo, hi = cfg.needle_frames
    dur = np.minimum(rng.integers(lo, hi + 1, size=count), frames // count)
    cuts = np.sort(rng.integers(0, frames - int(dur.sum()) + 1, size=count))
    starts = cuts + np.concatenate([[0], np.cumsum(dur)[:-1]])
    # Colours as balanced as possible, shapes chosen so that (colour, shape) pairs repeat as late as possible.
    blocks = -(-count // len(COLOR_NAMES))
    colors = np.concatenate([rng.permutation(len(COLOR_NAMES)) for _ in range(blocks)])[:count]
    colors = rng.permutation(colors)
    used: dict[int, set[int]] = {}
    sizes = cfg.sizes
    out = []
    for i in range(count):
        c = int(colors[i])
        free = [s for s in range(len(SHAPES)) if s not in used.setdefault(c, set())]
        shape = int(rng.choice(free)) if free else int(rng.integers(len(SHAPES)))
        used[c].add(shape)
        quadrant = int(rng.integers(4))
        size = sizes[int(rng.integers(len(sizes)))]
        box = random_box(rng, cfg.height, cfg.width, size, quadrant, cfg.cell)
        first = int(starts[i])
        out.append(
            make_needle(
                i,
                COLOR_NAMES[c],
                SHAPES[shape],
                box,
                first,
                first + int(dur[i]) - 1,
                cfg.fps,
                cfg.cell,
                QUADRANTS[quadrant],
            )
        )
    return tuple(out)


def _distractors(rng: np.random.Generator, cfg: WorldConfig) -> Distractors:
    frames, fps = cfg.frame_count, cfg.fps
    starts: list[int] = []
    stops: list[int] = []
    for _ in range(cfg.distractors):
        t = -int(rng.integers(0, max(1, round(DISTRACTOR_LIFE_S[1] * fps))))  # lanes start mid-life
        while t < frames:
            life = max(1, round(rng.uniform(*DISTRACTOR_LIFE_S) * fps))
            if t + life > 0:
                starts.append(max(t, 0))
                stops.append(min(t + life, frames))
            t += life + round(rng.uniform(*DISTRACTOR_GAP_S) * fps)
    k = len(starts)
    base = cfg.cell or 28
    size = rng.integers(base // 2, 3 * base // 2 + 1, size=k)
    size = np.minimum(size, min(cfg.height, cfg.width) // 2).clip(min=1)
    dark = rng.random(k) < 0.5
    level = np.where(dark, rng.uniform(*DARK_GREYS, size=k), rng.uniform(*LIGHT_GREYS, size=k))
    speed = rng.uniform(*DISTRACTOR_SPEED_PX_S, size=k) / fps
    angle = rng.uniform(0, 2 * np.pi, size=k)
    return Distractors(
        start=np.asarray(starts, dtype=np.int64),
        stop=np.asarray(stops, dtype=np.int64),
        shape=rng.integers(0, len(SHAPES), size=k),
        size=size.astype(np.int64),
        level=level.astype(np.float32),
        x0=rng.uniform(0, 1, size=k) * (cfg.width - size),
        y0=rng.uniform(0, 1, size=k) * (cfg.height - size),
        vx=speed * np.cos(angle),
        vy=speed * np.sin(angle),
    )


def _scene_bounds(rng: np.random.Generator, cfg: WorldConfig) -> np.ndarray:
    bounds = [0]
    while bounds[-1] < cfg.frame_count:
        bounds.append(bounds[-1] + max(1, round(rng.uniform(*cfg.scene_seconds) * cfg.fps)))
    return np.asarray(bounds, dtype=np.int64)
