"""From decoded frames to chunks: pick frames at a target rate, group them into timed chunks."""

from __future__ import annotations

import numpy as np

from streams.source import Chunk

# Frame times this close before a sampling instant count as on it (float rounding), at least.
TIME_TOLERANCE_S = 1e-3


class FrameSampler:
    """Keeps frames at `fps` on a fixed grid of instants, so 25 fps to 1 fps keeps every 25th frame.

    A frame up to half a source frame interval early counts as on its instant, so the frame nearest
    to it is kept even when live timestamps wobble by a few milliseconds. After a gap longer than one
    period (a reconnect, dropped frames) the grid restarts at the next frame instead of keeping a
    burst of catch-up frames; so does a jump back in time.
    """

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._tolerance = TIME_TOLERANCE_S
        self._due: float | None = None

    def take(self, t: float) -> bool:
        """Whether the frame at time `t` (seconds) is kept."""
        if self._due is not None and t < self._due - self.period - self._tolerance:
            self._due = None  # time went backwards
        if self._due is not None and t < self._due - self._tolerance:
            return False
        due = t if self._due is None else self._due
        self._due = due + self.period
        if self._due <= t:
            self._due = t + self.period
        return True

    def restart(self, frame_interval: float = 0.0) -> None:
        """Forget the grid (new session): the next frame is kept and starts a new one.

        Args:
            frame_interval: the source's frame interval, seconds, if known (sets the tolerance).
        """
        self._due = None
        self._tolerance = max(TIME_TOLERANCE_S, 0.5 * min(frame_interval, self.period))


class Chunker:
    """Groups sampled frames into chunks spanning `chunk_seconds` of source time.

    A chunk starts at its first frame's time and closes as soon as it holds `frames_per_chunk`
    frames or a frame falls at or past its end, so a steady source yields chunks of equal length
    without waiting for the next frame. `flush()` hands out a partial chunk (end of a session).
    """

    def __init__(self, stream_id: str, *, chunk_seconds: float, frames_per_chunk: int, live: bool) -> None:
        self.stream_id = stream_id
        self.chunk_seconds = chunk_seconds
        self.frames_per_chunk = frames_per_chunk
        self.live = live
        self.next_seq = 0
        self._frames: list[np.ndarray] = []
        self._times: list[float] = []
        self._index: list[int] = []

    def add(self, frame: np.ndarray, t: float, index: int) -> list[Chunk]:
        """Add one (H, W, 3) frame at time `t` with source frame index `index`; return closed chunks."""
        closed: list[Chunk] = []
        if self._frames and (
            t >= self._times[0] + self.chunk_seconds - TIME_TOLERANCE_S
            or frame.shape != self._frames[0].shape
        ):
            closed.extend(self.flush())
        self._frames.append(frame)
        self._times.append(t)
        self._index.append(index)
        if len(self._frames) >= self.frames_per_chunk:
            closed.extend(self.flush())
        return closed

    def flush(self) -> list[Chunk]:
        """Close the open chunk, if it has frames."""
        if not self._frames:
            return []
        chunk = Chunk(
            stream_id=self.stream_id,
            seq=self.next_seq,
            frames=np.stack(self._frames),
            times=np.asarray(self._times, dtype=np.float64),
            frame_index=np.asarray(self._index, dtype=np.int64),
            live=self.live,
        )
        self.next_seq += 1
        self._frames, self._times, self._index = [], [], []
        return [chunk]

    @property
    def pending(self) -> int:
        """Frames waiting in the open chunk."""
        return len(self._frames)
