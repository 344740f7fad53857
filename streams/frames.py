"""Decoded frames to model-ready pixels: RGB uint8, optionally downscaled."""

from __future__ import annotations

import av
import numpy as np


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """(width, height) shrunk so the longer side is at most `max_side`, aspect kept; None if already small."""
    if max_side is None or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_rgb(frame: av.VideoFrame, max_side: int | None = None) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB, area-downscaled so its longer side <= `max_side`."""
    size = scaled_size(frame.width, frame.height, max_side)
    if size is None:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")
