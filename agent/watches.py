"""Standing questions: when a watch is due on a stream, and whether its answer raises an event."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.mqtt import WatchSpec


@dataclass
class _StreamMark:
    last_eval: float | None = None
    last_event: float | None = None


@dataclass
class WatchState:
    """One watch and, per stream, when it last ran and fired."""

    spec: WatchSpec
    marks: dict[str, _StreamMark] = field(default_factory=dict)

    def covers(self, stream_id: str) -> bool:
        return self.spec.streams is None or stream_id in self.spec.streams

    def due(self, stream_id: str, now: float) -> bool:
        """Evaluate at most once per `min_interval_s` per stream."""
        mark = self.marks.setdefault(stream_id, _StreamMark())
        return mark.last_eval is None or now - mark.last_eval >= self.spec.min_interval_s

    def observe(self, stream_id: str, answer: str, now: float) -> bool:
        """Record an evaluation; True when it raises an event.

        With `expect`, an event fires when the answer equals it (`WatchSpec.matches`); without, every
        evaluation fires. Either way no second event fires within `cooldown_s` on that stream.
        """
        mark = self.marks.setdefault(stream_id, _StreamMark())
        mark.last_eval = now
        hit = self.spec.matches(answer)
        cooling = mark.last_event is not None and now - mark.last_event < self.spec.cooldown_s
        if hit and not cooling:
            mark.last_event = now
            return True
        return False


class WatchBook:
    """The watches in force, from the config and added or removed over MQTT."""

    def __init__(self, specs: list[WatchSpec]) -> None:
        self._watches: dict[str, WatchState] = {s.id: WatchState(s) for s in specs}

    def add(self, spec: WatchSpec) -> None:
        """Add or replace a watch (its schedule restarts)."""
        self._watches[spec.id] = WatchState(spec)

    def remove(self, watch_id: str) -> bool:
        return self._watches.pop(watch_id, None) is not None

    def specs(self) -> list[WatchSpec]:
        return [w.spec for w in self._watches.values()]

    def questions(self) -> list[str]:
        """Watch questions, which also feed the memory's ingest score."""
        return [w.spec.question for w in self._watches.values()]

    def due(self, stream_id: str, now: float) -> list[WatchState]:
        return [w for w in self._watches.values() if w.covers(stream_id) and w.due(stream_id, now)]
