"""H.264 mp4 files of synthetic videos through PyAV, with their ground truth as JSON beside them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streams.synth.render import render_frames
from streams.synth.truth import GroundTruth, ground_truth
from streams.synth.world import World

DEFAULT_CRF = 18  # low enough that needle colours survive yuv420p chroma subsampling


def frame_rate(fps: float) -> Fraction:
    """`fps` as the exact-enough fraction a container needs (e.g. 29.97 -> 2997/100)."""
    return Fraction(fps).limit_denominator(1001)


def write_mp4(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: float,
    crf: int = DEFAULT_CRF,
    preset: str = "veryfast",
) -> int:
    """Encode (H, W, 3) uint8 RGB frames as H.264 (libx264, yuv420p) into `path`; returns the frame count.

    Frames are consumed one at a time, so any length streams in constant memory. H and W must be even.
    """
    rate = frame_rate(fps)
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for frame in frames:
            if count == 0:
                height, width = frame.shape[:2]
                if height % 2 or width % 2:
                    raise ValueError(f"H.264 yuv420p needs even dimensions, got {width}x{height}")
                stream.width, stream.height = width, height
            video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
            video.pts = count
            video.time_base = 1 / rate
            container.mux(stream.encode(video))
            count += 1
        container.mux(stream.encode(None))
    return count


def read_mp4(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video file into (H, W, 3) uint8 RGB frames, one at a time."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def truth_path(video_path: str | Path) -> Path:
    """Where the ground truth of `video_path` lives: the same name with a .json suffix."""
    return Path(video_path).with_suffix(".json")


def write_world(
    world: World, path: str | Path, crf: int = DEFAULT_CRF, preset: str = "veryfast"
) -> GroundTruth:
    """Render `world` into an mp4 at `path` (streaming) and its ground truth beside it; returns the truth."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = write_mp4(render_frames(world), path, world.config.fps, crf=crf, preset=preset)
    truth = ground_truth(world)
    if written != truth.frame_count:
        raise RuntimeError(f"wrote {written} frames, expected {truth.frame_count}")
    truth.save(truth_path(path))
    return truth
