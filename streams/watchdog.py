"""Keeping live sources alive: stall detection (the back-off is common.backoff)."""

from __future__ import annotations


class StallWatchdog:
    """Says a source has stalled when no frame arrived for `stall_seconds` (monotonic clock).

    The decoder thread feeds it every frame and asks it after every packet and every idle read
    tick, so a camera that keeps the connection open but sends nothing decodable is caught too.
    """

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._last = 0.0

    def reset(self, now: float) -> None:
        """Start a new session: the stall clock counts from `now`."""
        self._last = now

    def feed(self, now: float) -> None:
        """A frame arrived at `now`."""
        self._last = now

    def silent_for(self, now: float) -> float:
        """Seconds since the last frame (or the session start)."""
        return now - self._last

    def stalled(self, now: float) -> bool:
        """Whether the source has been silent for at least `stall_seconds`."""
        return self.silent_for(now) >= self.stall_seconds
