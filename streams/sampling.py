"""Uniform sampling of N frames from a recording, for one-shot questions about a whole file.

Backends (measured in bench/streams_decode.py, summarised in docs/streams.md):
    pyav        the default: seek to the keyframe before each target, decode forward to it.
    torchcodec  optional: `VideoDecoder(seek_mode="approximate").get_frames_at`; as fast as pyav on
                CPU here, needs FFmpeg 4-8 shared libraries on the system.
decord and decord2 were measured 2-3x slower than pyav and are not offered.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import av
import av.error
import numpy as np

from streams.backends import translate_av_error, video_stream
from streams.errors import (
    BackendUnavailableError,
    InvalidMediaError,
    SourceNotFoundError,
    UnsupportedSourceError,
)
from streams.frames import scaled_size, to_rgb
from streams.uri import SourceKind, SourceSpec, parse_source

BACKENDS = ("pyav", "torchcodec")
DEFAULT_BACKEND = "pyav"
# Targets closer than this after the current decode position are reached by decoding on, not seeking.
SEEK_THRESHOLD_S = 2.0


@dataclass(frozen=True)
class VideoInfo:
    """What a recording's header says about its first video stream."""

    duration_s: float
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    start_s: float = 0.0


class UniformSample(NamedTuple):
    """`frames` (n, H, W, 3) uint8 RGB and their `times` (n,) in seconds from the stream start."""

    frames: np.ndarray
    times: np.ndarray
    info: VideoInfo


def available_backends() -> tuple[str, ...]:
    """The backends whose Python package is installed (pyav always)."""
    modules = {"torchcodec": "torchcodec", "pyav": "av"}
    return tuple(name for name in BACKENDS if importlib.util.find_spec(modules[name]) is not None)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Duration, frame rate, frame count and size of a recording, from its header.

    Raises:
        SourceNotFoundError, InvalidMediaError, NoVideoStreamError, UnsupportedSourceError:
            missing, unreadable or non-video input (credentials masked).
    """
    spec = _recording_spec(path)
    try:
        with av.open(spec.locator, timeout=30.0) as container:
            stream = video_stream(container, spec)
            return _info(container, stream, spec)
    except (av.error.FFmpegError, OSError) as exc:
        raise translate_av_error(exc, spec) from None


def sample_uniform(
    path: str | os.PathLike[str], n: int, backend: str = DEFAULT_BACKEND, *, max_side: int | None = None
) -> UniformSample:
    """Decode `n` frames spread evenly over a recording: frame floor((i + 0.5) * frame_count / n).

    Args:
        path: a local file (or an http(s) URL, pyav and torchcodec only).
        n: frames wanted, >= 1; more than the file holds repeats frames.
        backend: "pyav" (default) or "torchcodec".
        max_side: downscale so the longer side is at most this many pixels.

    Raises:
        ValueError: n < 1 or an unknown backend name.
        BackendUnavailableError: the backend asked for is not installed or cannot load.
        StreamError: missing, unreadable or non-video input (see `probe`).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    spec = _recording_spec(path)
    info = probe(path)
    return _SAMPLERS[backend](spec, uniform_indices(info.frame_count, n), info, max_side)


def uniform_indices(frame_count: int, n: int) -> np.ndarray:
    """The centres of n equal segments of [0, frame_count), as int64 frame indices."""
    count = max(frame_count, 1)
    return np.minimum(((np.arange(n) + 0.5) * count / n).astype(np.int64), count - 1)


# --- backends --------------------------------------------------------------------------------------


def _sample_pyav(
    spec: SourceSpec, indices: np.ndarray, info: VideoInfo, max_side: int | None
) -> UniformSample:
    """Seek to the keyframe at or before each target time, then decode forward to the target frame."""
    fps = info.fps or 25.0
    targets = info.start_s + indices / fps
    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        with av.open(spec.locator, timeout=30.0) as container:
            stream = video_stream(container, spec)
            stream.thread_type = "AUTO"
            tb = stream.time_base
            assert tb is not None
            decoded = None  # iterator positioned after `current`
            current: av.VideoFrame | None = None
            for target in targets:
                if not _near(current, target):
                    container.seek(int(target / tb), stream=stream, backward=True)
                    decoded, current = container.decode(stream), None
                assert decoded is not None
                current = _decode_until(decoded, current, target - 0.5 / fps)
                if current is None:
                    raise InvalidMediaError(f"no frame decodes at {target:.2f} s", uri=spec.masked)
                frames.append(to_rgb(current, max_side))
                times.append((current.time or 0.0) - info.start_s)
    except (av.error.FFmpegError, OSError) as exc:
        raise translate_av_error(exc, spec) from None
    return UniformSample(np.stack(frames), np.asarray(times, dtype=np.float64), info)


def _near(current: av.VideoFrame | None, target: float) -> bool:
    """Whether `target` lies a little after the current decode position, so decoding on beats seeking."""
    return current is not None and current.time is not None and 0 <= target - current.time < SEEK_THRESHOLD_S


def _decode_until(decoded: Any, current: av.VideoFrame | None, t: float) -> av.VideoFrame | None:
    """The first frame at or after time `t` (or the last frame of the file), starting at `current`."""
    if current is not None and current.time is not None and current.time >= t:
        return current
    for frame in decoded:
        current = frame
        if frame.time is not None and frame.time >= t:
            break
    return current


def _sample_torchcodec(
    spec: SourceSpec, indices: np.ndarray, info: VideoInfo, max_side: int | None
) -> UniformSample:
    decoders = _import_backend("torchcodec", "torchcodec.decoders")
    transforms = None
    if (size := scaled_size(info.width, info.height, max_side)) is not None:
        transforms = [_import_backend("torchcodec", "torchcodec.transforms").Resize(size=(size[1], size[0]))]
    try:
        decoder = decoders.VideoDecoder(
            spec.locator,
            seek_mode="approximate",
            dimension_order="NHWC",
            num_ffmpeg_threads=0,
            transforms=transforms,
        )
        batch = decoder.get_frames_at(indices.tolist())
    except RuntimeError as exc:
        if "libtorchcodec" in str(exc):
            raise BackendUnavailableError(
                "torchcodec cannot load: it needs FFmpeg 4-8 shared libraries "
                "(Debian: apt-get install libavformat59 libavdevice59 libavfilter8 libswscale6)"
            ) from None
        raise InvalidMediaError(
            f"torchcodec could not decode: {type(exc).__name__}", uri=spec.masked
        ) from None
    frames = batch.data.numpy()
    times = batch.pts_seconds.numpy().astype(np.float64) - info.start_s
    return UniformSample(np.ascontiguousarray(frames), times, info)


_SAMPLERS: dict[str, Callable[[SourceSpec, np.ndarray, VideoInfo, int | None], UniformSample]] = {
    "torchcodec": _sample_torchcodec,
    "pyav": _sample_pyav,
}


# --- helpers ---------------------------------------------------------------------------------------


def _recording_spec(path: str | os.PathLike[str]) -> SourceSpec:
    spec = parse_source(path)
    if spec.kind not in (SourceKind.FILE, SourceKind.HTTP):
        raise UnsupportedSourceError(
            "uniform sampling needs a recording (a file or an http URL)", uri=spec.masked
        )
    if spec.kind is SourceKind.FILE and not os.path.exists(spec.locator):
        raise SourceNotFoundError("no such file", uri=spec.masked)
    return spec


def _info(container: av.container.InputContainer, stream: av.VideoStream, spec: SourceSpec) -> VideoInfo:
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    if stream.duration is not None and tb:
        duration = float(stream.duration * tb)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        raise InvalidMediaError("the recording states no duration (a live stream?)", uri=spec.masked)
    frame_count = stream.frames or round(duration * fps)
    if frame_count <= 0 or duration <= 0:
        raise InvalidMediaError("the recording holds no video frames", uri=spec.masked)
    return VideoInfo(
        duration_s=duration,
        fps=fps or frame_count / duration,
        frame_count=frame_count,
        width=stream.width,
        height=stream.height,
        codec=stream.codec_context.name,
        start_s=start,
    )


def _import_backend(name: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the {name} backend is not installed ({exc.name or module}); pip install {name}"
        ) from None
