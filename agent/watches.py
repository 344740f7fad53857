"""Standing questions: when a watch is due on a stream, whether its answer raises an event, its limits.

The limits keep a flood of watches from crowding out questions: a cap, an interval floor, a share of the
model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from agent.mqtt import ErrorCode, RequestError, WatchSpec


class WatchLimits(BaseModel):
    """Bounds on standing questions, whoever adds them (config file or MQTT)."""

    model_config = ConfigDict(extra="forbid")

    max_watches: int = Field(32, ge=0, le=10_000, title="Watches in force at once; more: too_many_watches")
    min_interval_s: float = Field(
        2.0, ge=0, le=86_400, title="Smallest min_interval_s a watch may ask for (s)"
    )
    max_running: int = Field(
        1,
        ge=1,
        le=64,
        title="Watch evaluations (memory read + model) in progress at once, all watches together",
    )


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
    """The watches in force, from the config and added or removed over MQTT, within `limits`."""

    def __init__(self, specs: list[WatchSpec], limits: WatchLimits | None = None) -> None:
        self.limits = limits or WatchLimits()
        self._watches: dict[str, WatchState] = {s.id: WatchState(s) for s in specs}
        self.running = 0

    def __len__(self) -> int:
        return len(self._watches)

    def check(self, spec: WatchSpec, *, reply_to: str | None = None) -> None:
        """Refuse a watch the limits do not allow: an interval below the floor, or one watch too many.

        Raises:
            RequestError: `invalid_request` (interval) or `too_many_watches` (cap; a replacement is fine).
        """
        floor = self.limits.min_interval_s
        if spec.min_interval_s < floor:
            raise RequestError(
                ErrorCode.INVALID_REQUEST,
                f"field 'min_interval_s': {spec.min_interval_s:g} s is below this agent's floor, {floor:g} s",
                request_id=spec.id,
                reply_to=reply_to,
            )
        if spec.id not in self._watches and len(self._watches) >= self.limits.max_watches:
            raise RequestError(
                ErrorCode.TOO_MANY_WATCHES,
                f"{len(self._watches)} watches are in force, the limit is {self.limits.max_watches}; "
                "remove one first",
                request_id=spec.id,
                reply_to=reply_to,
            )

    def add(self, spec: WatchSpec) -> None:
        """Add or replace a watch (its schedule restarts); raises `RequestError` as `check` does."""
        self.check(spec)
        self._watches[spec.id] = WatchState(spec)

    def remove(self, watch_id: str) -> bool:
        return self._watches.pop(watch_id, None) is not None

    def specs(self) -> list[WatchSpec]:
        return [w.spec for w in self._watches.values()]

    def questions(self) -> list[str]:
        """Watch questions, which also feed the memory's ingest score."""
        return [w.spec.question for w in self._watches.values()]

    def due(self, stream_id: str, now: float) -> list[WatchState]:
        """Watches due on `stream_id`, the least recently evaluated there first."""
        due = [w for w in self._watches.values() if w.covers(stream_id) and w.due(stream_id, now)]
        return sorted(due, key=lambda w: w.marks[stream_id].last_eval or float("-inf"))

    def claim(self, stream_id: str, now: float) -> list[WatchState]:
        """Due watches on `stream_id` that may run now: at most the free `max_running` slots, least
        recently evaluated first (so every watch gets its turn); each is marked as run at `now`.

        Call `release()` once per claimed watch when its evaluation ends. The others stay due and are
        considered again on the stream's next chunk.
        """
        free = self.limits.max_running - self.running
        claimed = self.due(stream_id, now)[: max(free, 0)]
        for watch in claimed:
            watch.marks[stream_id].last_eval = now
        self.running += len(claimed)
        return claimed

    def release(self) -> None:
        """One claimed evaluation ended (answered, skipped or failed)."""
        self.running = max(self.running - 1, 0)
