"""The most recent watch events, kept for the console and the HTTP API."""

from __future__ import annotations

from collections import deque

from agent.mqtt import WatchEvent

MAX_EVENTS = 200


class EventLog:
    """The most recent watch events (newest last), for the console and `GET /api/v1/events`."""

    def __init__(self, size: int = MAX_EVENTS) -> None:
        self._events: deque[WatchEvent] = deque(maxlen=size)

    def add(self, event: WatchEvent) -> None:
        self._events.append(event)

    def recent(self, watch_id: str | None = None, limit: int = MAX_EVENTS) -> list[WatchEvent]:
        """Newest first, optionally of one watch."""
        events = [e for e in reversed(self._events) if watch_id is None or e.watch_id == watch_id]
        return events[:limit]
