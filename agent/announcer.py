"""The announcer: what the agent publishes unprompted, on MQTT and to Home Assistant.

Stream status, the watch list, watch events with their pictures and snapshots, and Home Assistant's copies,
each read from the part that owns it when it is sent.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from agent.event_log import EventLog
from agent.homeassistant import HomeAssistant
from agent.ingest import StreamHealth
from agent.ingests import Ingests
from agent.memory import TokenMemory
from agent.metrics import AgentMetrics
from agent.mqtt import LinkState, MqttLink, StreamStatus, WatchList, WatchSpec
from agent.pictures import Pictures
from agent.questions import with_pictures
from agent.tasks import TaskSet
from agent.watch_service import WatchFired
from agent.wire import watch_event

STATUS_INTERVAL_S = 5.0


class Announcer:
    """Publishes on the link; `run_status()` repeats every stream's status, `stop()` ends what is pending."""

    def __init__(
        self,
        link: MqttLink,
        *,
        memory: TokenMemory,
        pictures: Pictures | None,
        events: EventLog,
        metrics: AgentMetrics,
        snapshots: bool,
        homeassistant: HomeAssistant | None,
    ) -> None:
        self.link = link
        self.memory = memory
        self.pictures = pictures
        self.events = events
        self.metrics = metrics
        self.snapshots = snapshots
        self.homeassistant = homeassistant
        self.ingests: Ingests | None = None  # set once the ingests exist (they report to us)
        self._pending = TaskSet("status publications")

    # ------------------------------------------------------------------------------------------- status
    def stream_changed(self, health: StreamHealth) -> None:
        """A stream's state changed: publish its status soon (called from the ingest, not awaited)."""
        self._pending.start(self.publish_status(health.stream_id))

    async def run_status(self) -> None:
        """Every stream's status now and every `STATUS_INTERVAL_S` (retained, as Frigate's availability)."""
        while True:
            await self.publish_statuses()
            await asyncio.sleep(STATUS_INTERVAL_S)

    async def publish_statuses(self) -> None:
        for stream_id in list(self.ingests or ()):
            await self.publish_status(stream_id)

    async def publish_status(self, stream_id: str) -> None:
        if self.link.state in (LinkState.STOPPED, LinkState.NEW) or self.ingests is None:
            return
        ingest = self.ingests.get(stream_id)
        if ingest is None:  # handed over meanwhile
            return
        health = ingest.health
        stats = (await self.memory.stats(stream_id)).streams.get(stream_id)
        tokens, nbytes = (stats.tokens, stats.bytes) if stats else (0, 0)
        status = StreamStatus(
            stream=stream_id,
            state=health.state.value,
            online=health.online,
            fps=health.fps(time.time()),
            frames=health.frames,
            drops=health.drops,
            reconnects=health.reconnects,
            stalls=health.stalls,
            memory_tokens=tokens,
            memory_bytes=nbytes,
            shed_factor=health.shed_factor,
            ingest_lag_s=round(health.ingest_lag_s, 3),
            last_error=health.last_error,
            updated_at=datetime.now(UTC),
        )
        await self.link.publish(self.link.topics.status(stream_id), status.payload(), retain=True)

    # ------------------------------------------------------------------------------------------ watches
    async def announce(self, streams: list[str], watches: list[WatchSpec]) -> None:
        """At start: the watch list, and Home Assistant's discovery of every stream and watch."""
        await self.publish_watches(watches)
        if self.homeassistant is not None:
            await self.homeassistant.announce(streams, watches)

    async def publish_watches(self, watches: list[WatchSpec]) -> None:
        listing = WatchList(watches=watches, updated_at=datetime.now(UTC))
        await self.link.publish(self.link.topics.watches, listing.payload(), retain=True)

    async def watch_added(self, spec: WatchSpec, watches: list[WatchSpec]) -> None:
        await self.publish_watches(watches)
        if self.homeassistant is not None:
            await self.homeassistant.watch_added(spec)

    async def watch_removed(self, watch_id: str, watches: list[WatchSpec]) -> None:
        await self.publish_watches(watches)
        if self.homeassistant is not None:
            await self.homeassistant.watch_removed(watch_id)

    async def watch_fired(self, fired: WatchFired) -> None:
        """The event with its pictures: counted, logged for the console, published, snapshot, HA."""
        evidence, snapshot = await with_pictures(self.pictures, fired.evidence)
        event = watch_event(WatchFired(fired.watch, fired.stream, fired.answer, evidence, fired.at))
        self.metrics.watch_events.labels(fired.watch.id).inc()
        self.events.add(event)
        await self.link.publish(self.link.topics.events(fired.stream), event.payload())
        await self.snapshot(f"{fired.stream}/snapshot/watch/{fired.watch.id}", snapshot)
        if self.homeassistant is not None:
            await self.homeassistant.watch_fired(event)

    async def snapshot(self, path: str, jpeg: bytes | None) -> None:
        """The JPEG of the best evidence on `<prefix>/<path>`, retained, as Frigate publishes snapshots."""
        if jpeg is None or not self.snapshots:
            return
        await self.link.publish(f"{self.link.topics.prefix}/{path}", jpeg, retain=True)

    async def stop(self, timeout_s: float) -> None:
        """Cancel the publications still pending and wait for them (at most `timeout_s`)."""
        await self._pending.cancel(timeout_s)
