"""What a source hands out: timed chunks of frames, its state and counters, and the FrameSource seam."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import numpy as np


@dataclass(frozen=True, eq=False)
class Chunk:
    """Consecutive sampled frames of one source.

    Attributes:
        stream_id: the source's id.
        seq: 0, 1, 2, ... per source; a gap means chunks were dropped.
        frames: (T, H, W, 3) uint8 RGB.
        times: (T,) float64 seconds: Unix wall-clock for live sources, media time for recordings.
        frame_index: (T,) int64 position of each frame in the source's frame sequence since the
            source started; monotonic, and it keeps counting across reconnects.
        live: whether `times` are wall-clock times of a live source.
    """

    stream_id: str
    seq: int
    frames: np.ndarray
    times: np.ndarray
    frame_index: np.ndarray
    live: bool

    def __post_init__(self) -> None:
        n = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be (T, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}"
            )
        if self.times.shape != (n,) or self.frame_index.shape != (n,):
            raise ValueError(
                f"times {self.times.shape} and frame_index {self.frame_index.shape} must be ({n},)"
            )

    @property
    def t0(self) -> float:
        """Time of the first frame, seconds."""
        return float(self.times[0])

    @property
    def t1(self) -> float:
        """Time of the last frame, seconds."""
        return float(self.times[-1])

    def __len__(self) -> int:
        return len(self.frames)


class StreamState(Enum):
    """Where a source is in its life; ENDED and FAILED are final."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    BACKING_OFF = "backing_off"
    ENDED = "ended"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        """Whether no more chunks can follow."""
        return self in (StreamState.ENDED, StreamState.FAILED)


@dataclass
class StreamStats:
    """Counters of one source since it started, for metrics and status.

    Attributes:
        connects: successful opens (the first one included).
        reconnects: connection attempts after the first one.
        stalls: times the watchdog saw no frame for `stall_seconds`.
        drops: chunks dropped because the consumer fell behind (live sources only).
        frames_decoded: frames out of the decoder.
        frames_sampled: frames kept by sampling and converted to RGB.
        chunks: chunks produced (delivered plus dropped).
        decode_errors: packets the decoder rejected (skipped).
        last_error: the latest error, credentials masked; None until one happens.
        last_frame_at: Unix time at which the latest frame was decoded; None before the first.
    """

    connects: int = 0
    reconnects: int = 0
    stalls: int = 0
    drops: int = 0
    frames_decoded: int = 0
    frames_sampled: int = 0
    chunks: int = 0
    decode_errors: int = 0
    last_error: str | None = None
    last_frame_at: float | None = None


@runtime_checkable
class FrameSource(Protocol):
    """An asynchronous sequence of chunks from one camera or recording.

    Use it as `async with open_source(uri, config) as source: async for chunk in source: ...`.
    Iteration ends after a recording's last chunk, and raises the `StreamError` that made the
    source FAILED. A live source keeps reconnecting until it is closed.
    """

    @property
    def stream_id(self) -> str: ...

    @property
    def uri(self) -> str:
        """The source URI with credentials masked."""
        ...

    @property
    def live(self) -> bool: ...

    @property
    def state(self) -> StreamState: ...

    @property
    def stats(self) -> StreamStats:
        """A snapshot of the counters."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> Chunk: ...
