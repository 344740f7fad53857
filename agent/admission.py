"""Load shedding at ingest: when the model cannot keep up, every stream samples fewer frames.

The signal is the ingest lag: how long the oldest chunk of the last ingest batch waited for the model.
Above `shed_after_s` for `hold_s`, the shed factor doubles (each stream then keeps every 2nd, 4th, ...
frame of its chunks, a lower sampling rate, down to one temporal patch per chunk); below `recover_below_s`
for `hold_s`, it halves again. Queues stay bounded throughout (the worker's ingest queue and each source's
drop policy); shedding keeps the lag from growing instead of letting chunks age in them. The policy is pure
(times are passed in) so it is tested on its own; the worker feeds it and streams read `factor`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoadShedder:
    """Hysteresis over the ingest lag; `factor` is 1 (no shedding), 2, 4, ... up to `max_factor`."""

    shed_after_s: float = 4.0
    recover_below_s: float = 1.0
    hold_s: float = 8.0
    max_factor: int = 4
    factor: int = 1
    lag_s: float = 0.0
    changes: int = 0
    _since: float | None = field(default=None, repr=False)  # when the lag last crossed into its band
    _band: int = field(default=0, repr=False)  # +1 above shed_after_s, -1 below recover_below_s, 0 between

    def __post_init__(self) -> None:
        if not 0 <= self.recover_below_s < self.shed_after_s:
            raise ValueError("recover_below_s must be below shed_after_s (and not negative)")
        if self.max_factor < 1 or self.hold_s < 0:
            raise ValueError("max_factor must be at least 1 and hold_s not negative")

    @property
    def shedding(self) -> bool:
        return self.factor > 1

    def observe(self, lag_s: float, now: float) -> int:
        """Record the lag of an ingest batch at monotonic time `now`; returns the (new) factor."""
        self.lag_s = lag_s
        band = 1 if lag_s > self.shed_after_s else -1 if lag_s < self.recover_below_s else 0
        if band != self._band or self._since is None:
            self._band, self._since = band, now
            return self.factor
        if now - self._since < self.hold_s:
            return self.factor
        if band > 0 and self.factor < self.max_factor:
            self.factor = min(self.max_factor, self.factor * 2)
        elif band < 0 and self.factor > 1:
            self.factor //= 2
        else:
            return self.factor
        self.changes += 1
        self._since = now  # the next step needs another full hold at the new rate
        return self.factor


def thin(count: int, factor: int, temporal_patch: int) -> list[int]:
    """Indices of the frames a stream keeps of a `count`-frame chunk at shed `factor`: every factor-th
    frame, never fewer than one temporal patch (the tower's minimum input)."""
    if factor <= 1 or count <= temporal_patch:
        return list(range(count))
    kept = list(range(0, count, factor))
    if len(kept) < temporal_patch:
        step = max(1, count // temporal_patch)
        kept = list(range(0, step * temporal_patch, step))
    return kept
