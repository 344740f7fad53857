"""Where needles may go: quadrant geometry and grid-aligned boxes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streams.synth.vocab import QUADRANTS

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels


def _span(extent: int, size: int, second_half: bool) -> tuple[int, int]:
    """Inclusive range of start offsets that keep `size` pixels inside one half of `extent`."""
    return ((extent + 1) // 2, extent - size) if second_half else (0, extent // 2 - size)


def _starts(extent: int, size: int, second_half: bool, cell: int | None) -> tuple[int, int, int]:
    """(lo, hi, step) of allowed start offsets; empty when lo > hi."""
    lo, hi = _span(extent, size, second_half)
    if cell is None:
        return lo, hi, 1
    return -(-lo // cell) * cell, (hi // cell) * cell, cell


def size_fits(height: int, width: int, size: int, cell: int | None) -> bool:
    """Whether a `size`-pixel needle fits inside every quadrant (on the grid when `cell` is set)."""
    for extent in (height, width):
        for second in (False, True):
            lo, hi, _ = _starts(extent, size, second, cell)
            if lo > hi:
                return False
    return True


def needle_sizes(
    height: int, width: int, cell: int | None, cells: Sequence[int], px: tuple[int, int]
) -> list[int]:
    """Pixel sizes a needle may take: whole cells when `cell` is set, else any size in `px`."""
    sizes = [c * cell for c in cells] if cell is not None else list(range(px[0], px[1] + 1))
    return [s for s in sizes if s > 0 and size_fits(height, width, s, cell)]


def quadrant_of(box: Box, height: int, width: int) -> str | None:
    """The quadrant that wholly contains `box`, or None when it straddles a midline."""
    x, y, w, h = box
    if y + h <= height // 2:
        row = 0
    elif y >= (height + 1) // 2:
        row = 1
    else:
        return None
    if x + w <= width // 2:
        col = 0
    elif x >= (width + 1) // 2:
        col = 1
    else:
        return None
    return QUADRANTS[2 * row + col]


def random_box(
    rng: np.random.Generator, height: int, width: int, size: int, quadrant: int, cell: int | None
) -> Box:
    """A square `size`-pixel box inside quadrant number `quadrant` (see `QUADRANTS`), on the grid if set."""
    ylo, yhi, ystep = _starts(height, size, quadrant >= 2, cell)
    xlo, xhi, xstep = _starts(width, size, quadrant % 2 == 1, cell)
    if ylo > yhi or xlo > xhi:
        raise ValueError(f"a {size}px needle does not fit a quadrant of {width}x{height}")
    y = ylo + ystep * int(rng.integers(0, (yhi - ylo) // ystep + 1))
    x = xlo + xstep * int(rng.integers(0, (xhi - xlo) // xstep + 1))
    return (x, y, size, size)


def boxes_overlap(a: Box, b: Box) -> bool:
    """Whether two boxes share at least one pixel."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def third_of(frame: int, frame_count: int) -> int:
    """Which third (0, 1, 2) of `frame_count` frames a frame index falls in."""
    return min(2, 3 * frame // frame_count)
