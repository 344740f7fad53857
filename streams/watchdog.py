"""Keeping live sources alive: stall detection and capped exponential back-off with jitter."""

from __future__ import annotations

import random


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


class Backoff:
    """Delays before reconnect attempts: base, 2x base, 4x base, ... up to cap, each +- jitter.

    `failures` counts attempts that failed in a row; `reset()` after a session delivered frames.
    """

    def __init__(
        self, base_s: float, cap_s: float, jitter: float, *, rng: random.Random | None = None
    ) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got base_s={base_s}, cap_s={cap_s}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt, seconds."""
        self.failures += 1
        # 2**exponent overflows float past ~1000 failures in a row; the cap is reached long before.
        exponent = min(self.failures - 1, 62)
        delay = min(self.cap_s, self.base_s * 2.0**exponent)
        delay *= 1.0 + self.jitter * self._rng.uniform(-1.0, 1.0)
        return min(self.cap_s, max(0.0, delay))

    def reset(self) -> None:
        """A session succeeded: the next failure starts again from `base_s`."""
        self.failures = 0
