"""Pixels of the synthetic world: shape masks, textured backgrounds, colour classification and frames."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from streams.synth.vocab import COLORS, SHAPES
from streams.synth.world import STREAM_KEYFRAME, STREAM_NOISE, World, stream_rng


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# (n_colors, 3) needle colours in COLOR_NAMES order.
PALETTE: np.ndarray = _readonly(np.array(list(COLORS.values()), dtype=np.uint8))
SATURATION_MIN = 100  # max-min channel spread above which a pixel counts as a needle colour
TINT = 0.07  # backgrounds multiply each channel by 1 +- TINT: low saturation by construction
GREY_RANGE = (16.0, 239.0)


def shape_mask(shape: str, size: int) -> np.ndarray:
    """A (size, size) boolean mask of `shape`, filling most of the square so shapes differ per 14 px patch."""
    u = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    x, y = u[None, :], u[:, None]
    ax, ay, r2 = np.abs(x), np.abs(y), x * x + y * y
    m = 0.93  # half-extent: a margin of about one pixel in a 28 px cell
    if shape == "square":
        mask = (ax <= m) & (ay <= m)
    elif shape == "circle":
        mask = r2 <= 0.86**2
    elif shape == "triangle":  # apex up, base down
        mask = (y >= -m) & (y <= m) & (ax <= (y + m) / 2)
    elif shape == "cross":
        mask = ((ax <= 0.3) & (ay <= m)) | ((ay <= 0.3) & (ax <= m))
    elif shape == "ring":
        mask = (r2 <= m * m) & (r2 >= 0.5**2)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return mask


class ShapeMasks:
    """Memoised `shape_mask` results for one renderer or sampler (keyed by shape index and size)."""

    def __init__(self) -> None:
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, shape: int, size: int) -> np.ndarray:
        key = (shape, size)
        if key not in self._masks:
            self._masks[key] = _readonly(shape_mask(SHAPES[shape], size))
        return self._masks[key]


def interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation weights that stretch n_in samples over n_out."""
    pos = np.linspace(0, n_in - 1, n_out, dtype=np.float64)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, max(n_in - 2, 0))
    frac = pos - lo
    w = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    w[rows, lo] += (1 - frac).astype(np.float32)
    w[rows, np.minimum(lo + 1, n_in - 1)] += frac.astype(np.float32)
    return w


class TextureMaker:
    """Random smooth textures of one frame size: coarse blobs, fine grain and a faint grating."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self._octaves = []
        for step, amp in ((32, 24.0), (8, 9.0)):
            h, w = height // step + 2, width // step + 2
            self._octaves.append((h, w, interp_matrix(height, h) * amp, interp_matrix(width, w).T.copy()))
        self._y = np.arange(height, dtype=np.float32)[:, None]
        self._x = np.arange(width, dtype=np.float32)[None, :]

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(grey (H, W) float32, channel gains (3,) float32) of one background keyframe."""
        grey = np.full((self.height, self.width), rng.uniform(70.0, 180.0), dtype=np.float32)
        for h, w, left, right in self._octaves:
            grey += left @ rng.standard_normal((h, w), dtype=np.float32) @ right
        period, angle, phase = rng.uniform(8.0, 40.0), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        k = np.float32(2 * np.pi / period)
        grid = self._x * (k * np.float32(np.cos(angle))) + self._y * (k * np.float32(np.sin(angle)))
        grey += np.float32(rng.uniform(0.0, 10.0)) * np.cos(grid + np.float32(phase))
        gains = (1 + rng.uniform(-TINT, TINT, size=3)).astype(np.float32)
        return grey, gains


def add_noise(grey: np.ndarray, rng: np.random.Generator, amplitude: float) -> None:
    """Add integer pixel noise of about +-`amplitude` grey levels to `grey` in place, fast, from random bytes.

    The noise takes 2**k equally likely values centred on zero, with 2**k the largest power of two that is
    at most 2 * amplitude + 1 (amplitude 4 gives -3.5..3.5).
    """
    if amplitude < 0.5:
        return
    levels = 1 << math.floor(math.log2(2 * amplitude + 1))
    raw = np.frombuffer(rng.bytes(grey.size), dtype=np.uint8).reshape(grey.shape)
    grey += raw & np.uint8(levels - 1)
    grey -= np.float32((levels - 1) / 2)


def colorize(grey: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., H, W, 3) from a grey float32 field (..., H, W) and channel gains (..., 3).

    Clips `grey` in place to GREY_RANGE first; one pass per channel is much faster than broadcasting.
    """
    np.clip(grey, *GREY_RANGE, out=grey)
    out = np.empty((*grey.shape, 3), dtype=np.uint8)
    gains = np.asarray(gains, dtype=np.float32)
    for c in range(3):
        np.multiply(grey, gains[..., c, None, None], out=out[..., c], casting="unsafe")
    return out


def color_labels(frames: np.ndarray) -> np.ndarray:
    """Per-pixel needle colour index into COLOR_NAMES (int8), or -1 for unsaturated (non-needle) pixels."""
    px = frames.astype(np.int16)
    saturated = (px.max(axis=-1) - px.min(axis=-1)) >= SATURATION_MIN
    dist = ((px[..., None, :] - PALETTE.astype(np.int16)).astype(np.int32) ** 2).sum(axis=-1)
    return np.where(saturated, dist.argmin(axis=-1), -1).astype(np.int8)


class WorldRenderer:
    """Renders frames of a `World` one at a time; any frame can be rendered alone (random access)."""

    def __init__(self, world: World) -> None:
        self.world = world
        cfg = world.config
        self._textures = TextureMaker(cfg.height, cfg.width)
        self._keyframes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._masks = ShapeMasks()
        self._first = np.array([n.first_frame for n in world.needles], dtype=np.int64)
        self._last = np.array([n.last_frame for n in world.needles], dtype=np.int64)
        self._needle_shape = [SHAPES.index(n.shape) for n in world.needles]
        self._needle_rgb = [PALETTE[list(COLORS).index(n.color)] for n in world.needles]

    def _keyframe(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        if j not in self._keyframes:
            if len(self._keyframes) >= 4:  # streaming only ever needs two neighbouring keyframes
                self._keyframes.pop(next(iter(self._keyframes)))
            self._keyframes[j] = self._textures(stream_rng(self.world.config.seed, STREAM_KEYFRAME, j))
        return self._keyframes[j]

    def frame(self, index: int) -> np.ndarray:
        """The (H, W, 3) uint8 RGB frame `index`."""
        world, cfg = self.world, self.world.config
        if not 0 <= index < cfg.frame_count:
            raise IndexError(f"frame {index} outside 0..{cfg.frame_count - 1}")
        bounds = world.scene_bounds
        j = int(np.searchsorted(bounds, index, side="right")) - 1
        alpha = np.float32((index - bounds[j]) / (bounds[j + 1] - bounds[j]))
        (g0, c0), (g1, c1) = self._keyframe(j), self._keyframe(j + 1)
        grey = g0 + alpha * (g1 - g0)
        add_noise(grey, stream_rng(cfg.seed, STREAM_NOISE, index), cfg.noise)
        d = world.distractors
        idx = d.active(index)
        xs, ys = d.positions(idx, index, cfg.height, cfg.width)
        for k, x, y in zip(idx.tolist(), xs.tolist(), ys.tolist(), strict=True):
            s = int(d.size[k])
            grey[y : y + s, x : x + s][self._masks(int(d.shape[k]), s)] = d.level[k]
        rgb = colorize(grey, c0 + alpha * (c1 - c0))
        for k in np.flatnonzero((self._first <= index) & (index <= self._last)).tolist():
            x, y, w, h = world.needles[k].box
            rgb[y : y + h, x : x + w][self._masks(self._needle_shape[k], w)] = self._needle_rgb[k]
        return rgb

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames start..stop-1 one by one, never holding more than one in memory."""
        stop = self.world.frame_count if stop is None else min(stop, self.world.frame_count)
        for i in range(max(start, 0), stop):
            yield self.frame(i)


def render_frames(world: World, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Stream the frames of `world` (see `WorldRenderer.frames`)."""
    return WorldRenderer(world).frames(start, stop)
