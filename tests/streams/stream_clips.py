"""Generated test media: H.264 clips whose frames carry their own index as coloured blocks."""

from __future__ import annotations

import math
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID_ROWS = 2
GRID_COLS = 4
BITS_PER_BLOCK = 3  # one bit per RGB channel, each fully on or off
MAX_INDEX = 1 << (GRID_ROWS * GRID_COLS * BITS_PER_BLOCK)


def counter_frame(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose 2x4 grid of saturated blocks spells `index` in binary (24 bits)."""
    if not 0 <= index < MAX_INDEX:
        raise ValueError(f"index {index} does not fit in {MAX_INDEX}")
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    for block in range(GRID_ROWS * GRID_COLS):
        bits = (index >> (block * BITS_PER_BLOCK)) & 0b111
        rows, cols = _block_slices(block, width, height)
        frame[rows, cols] = [255 * ((bits >> channel) & 1) for channel in range(3)]
    return frame


def read_counter(frame: np.ndarray) -> int:
    """The index spelled by a decoded (H, W, 3) frame, read from each block's centre."""
    height, width, _ = frame.shape
    index = 0
    for block in range(GRID_ROWS * GRID_COLS):
        rows, cols = _block_slices(block, width, height, inner=True)
        mean = frame[rows, cols].reshape(-1, 3).mean(axis=0)
        bits = sum(1 << channel for channel in range(3) if mean[channel] > 127)
        index |= bits << (block * BITS_PER_BLOCK)
    return index


def _block_slices(block: int, width: int, height: int, *, inner: bool = False) -> tuple[slice, slice]:
    row, col = divmod(block, GRID_COLS)
    h, w = height / GRID_ROWS, width / GRID_COLS
    top, left = row * h, col * w
    margin_h, margin_w = (h / 4, w / 4) if inner else (0.0, 0.0)
    return (
        slice(math.floor(top + margin_h), math.ceil(top + h - margin_h)),
        slice(math.floor(left + margin_w), math.ceil(left + w - margin_w)),
    )


def write_counter_clip(
    path: Path,
    *,
    frames: int,
    fps: int = 10,
    width: int = 320,
    height: int = 240,
    gop: int | None = None,
    faststart: bool = False,
    first_index: int = 0,
) -> Path:
    """Encode `frames` counter frames as H.264 (yuv420p, no B-frames) at `fps`; GOP defaults to 1 s."""
    options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "18"}
    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", container_options=container_options) as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop or fps
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(counter_frame(first_index + i, width, height), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_wav(path: Path, *, seconds: float = 1.0, rate: int = 8000) -> Path:
    """A mono 16-bit WAV of silence: a valid media file with no video stream."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return path
