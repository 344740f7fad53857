"""Frame timestamps: wall-clock times for live sources, real-time pacing for replayed recordings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# A live frame time further than this behind its arrival time is re-anchored to the arrival time.
RESYNC_S = 2.0
# How fast the PTS-to-wall offset may creep up to follow a camera clock that runs slow, s per s.
CREEP = 1e-3


class LiveClock:
    """Stamps live frames with Unix time: camera PTS plus an offset that tracks the wall clock.

    The offset is the smallest (arrival - PTS) seen, so stamps keep the camera's even spacing (arrival
    times come in bursts) and never lie in the future. It creeps up slowly to follow a slow camera
    clock and re-anchors when stamps fall `resync_s` behind arrival (PTS jump, reset or wrap).
    Frames without PTS are placed one frame duration after the previous one. Stamps strictly
    increase across sessions, since camera clocks restart on reconnect.
    """

    def __init__(self, *, resync_s: float = RESYNC_S, now: Callable[[], float] = time.time) -> None:
        self.resync_s = resync_s
        self._now = now
        self._offset: float | None = None  # wall seconds minus PTS seconds
        self._last_pts: float | None = None
        self._last_arrival = 0.0
        self._last = float("-inf")
        self.resyncs = 0

    def stamp(self, pts_s: float | None, *, frame_duration: float = 0.0) -> float:
        """The Unix time of a frame presented at `pts_s` (None if unknown) that arrives now, seconds."""
        arrival = self._now()
        if pts_s is None and self._last_pts is not None and frame_duration > 0:
            pts_s = self._last_pts + frame_duration
        if pts_s is None:
            t = arrival
        else:
            self._track(pts_s, arrival)
            assert self._offset is not None
            t = pts_s + self._offset
            self._last_pts = pts_s
        self._last_arrival = arrival
        t = max(t, self._last + 1e-6)
        self._last = t
        return t

    def anchor(self, pts_s: float, arrival: float) -> None:
        """Set the offset from a frame known to have arrived at `arrival` (the end of a backlog)."""
        self._offset = arrival - pts_s
        self._last_arrival = arrival

    def _track(self, pts_s: float, arrival: float) -> None:
        observed = arrival - pts_s
        if self._offset is None:
            self._offset = observed
            return
        self._offset = min(self._offset + CREEP * (arrival - self._last_arrival), observed)
        if observed - self._offset > self.resync_s:
            self.resyncs += 1
            self._offset = observed

    def new_session(self) -> None:
        """A reconnect: PTS restarts, so the next frame sets a new offset (stamps stay increasing)."""
        self._offset = None
        self._last_pts = None


class Pacer:
    """Holds a replayed recording back so its media time advances no faster than the wall clock."""

    def __init__(self, stop: threading.Event, *, speed: float = 1.0) -> None:
        self.speed = speed
        self._stop = stop
        self._origin: tuple[float, float] | None = None  # (media seconds, monotonic seconds)

    def wait(self, media_t: float) -> bool:
        """Sleep until `media_t` is due; False if the source was stopped while waiting."""
        now = time.monotonic()
        if self._origin is None or media_t < self._origin[0]:
            self._origin = (media_t, now)
            return not self._stop.is_set()
        due = self._origin[1] + (media_t - self._origin[0]) / self.speed
        if due > now:
            return not self._stop.wait(due - now)
        return not self._stop.is_set()
