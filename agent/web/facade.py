"""What the HTTP API reads from and asks of the running agent, in one place (the API sees nothing else)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from agent.memory import MemoryState
from agent.memory.thumbnails import PicturesUnavailableError, frame_key
from agent.metrics import AgentSample, StreamSample, selector_cache_samples
from agent.mqtt import AnswerMessage, AskRequest, LinkState, WatchEvent, WatchList, WatchSpec
from agent.web.models import PictureList, PictureRef, StreamView
from flexselect.decoding import StaticDecoder

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.event_log import EventLog
    from agent.ingests import Ingests
    from agent.memory import TokenMemory
    from agent.metrics import AgentMetrics
    from agent.mqtt import MqttLink
    from agent.pictures import Pictures
    from agent.questions import QuestionService
    from agent.router import Router
    from agent.watch_service import WatchService
    from agent.worker import ModelWorker

MAX_PICTURES_LISTED = 2000


class RunningAgent(Protocol):
    """What the facade reads of the running agent (`agent.app.AgentApp`): its config, its parts (None
    until built) and the streams a question may name. A protocol, so the web side never imports the app."""

    config: AgentConfig
    events: EventLog
    metrics: AgentMetrics
    ready: asyncio.Event
    memory: TokenMemory | None
    pictures: Pictures | None
    worker: ModelWorker | None
    link: MqttLink | None
    questions: QuestionService | None
    watches: WatchService | None
    ingests: Ingests | None
    router: Router | None

    async def known_streams(self) -> list[str]: ...


class AgentFacade:
    """Reads the agent's state for the API and forwards its requests (ask, watch add/remove)."""

    def __init__(self, app: RunningAgent) -> None:
        self.app = app

    # ------------------------------------------------------------------------------------------ streams
    async def stream_ids(self) -> list[str]:
        """Configured streams, then those only the memory remembers."""
        if self.app.memory is None or self.app.ingests is None:
            return list(self.app.ingests or ())
        return await self.app.known_streams()

    async def stream(self, stream_id: str) -> StreamView:
        """One stream's state, memory fill and latest picture (the stream must be known)."""
        app = self.app
        memory = app.memory
        stats = None
        if memory is not None and memory.state == MemoryState.READY:
            stats = (await memory.stats(stream_id)).streams.get(stream_id)
        ingest = app.ingests.get(stream_id) if app.ingests is not None else None
        health = ingest.health if ingest is not None else None
        cap = app.config.memory.retention.max_tokens_per_stream
        tokens = stats.tokens if stats else 0
        latest = None
        pictures = 0
        if app.pictures is not None:
            try:
                keys = await app.pictures.store.keys(stream_id)
            except PicturesUnavailableError:
                keys = []
            pictures = len(keys)
            if keys:
                latest = PictureRef(time=_at(keys[-1] / 1e6), url=app.pictures.url(stream_id, keys[-1]))
        return StreamView(
            stream=stream_id,
            configured=ingest is not None,
            state=health.state.value if health else "remembered",
            online=bool(health and health.online),
            fps=health.fps(time.time()) if health else 0.0,
            frames=health.frames if health else 0,
            chunks=health.chunks if health else 0,
            drops=health.drops if health else 0,
            reconnects=health.reconnects if health else 0,
            stalls=health.stalls if health else 0,
            ingest_errors=health.ingest_errors if health else 0,
            last_error=health.last_error if health else None,
            memory_tokens=tokens,
            memory_bytes=stats.bytes if stats else 0,
            memory_max_tokens=cap,
            memory_fill=min(1.0, tokens / cap),
            first_time=_at(stats.first_time) if stats and stats.first_time is not None else None,
            last_time=_at(stats.last_time) if stats and stats.last_time is not None else None,
            pictures=pictures,
            latest_picture=latest,
        )

    async def pictures(
        self, stream_id: str, since: datetime | None, until: datetime | None, limit: int
    ) -> PictureList:
        """The stream's kept pictures in a window, evenly thinned to at most `limit`."""
        if self.app.pictures is None:
            return PictureList(stream=stream_id, total=0, pictures=[])
        keys = await self.app.pictures.store.keys(stream_id)
        lo = frame_key(since.timestamp()) if since else None
        hi = frame_key(until.timestamp()) if until else None
        keys = [k for k in keys if (lo is None or k >= lo) and (hi is None or k <= hi)]
        total = len(keys)
        if total > limit:
            keys = (
                [keys[round(i * (total - 1) / (limit - 1))] for i in range(limit)] if limit > 1 else keys[:1]
            )
        refs = [PictureRef(time=_at(k / 1e6), url=self.app.pictures.url(stream_id, k)) for k in keys]
        return PictureList(stream=stream_id, total=total, pictures=refs)

    async def picture(self, stream_id: str, key: int) -> bytes | None:
        if self.app.pictures is None:
            return None
        return await self.app.pictures.store.get(stream_id, key)

    # ------------------------------------------------------------------------------ questions, watches
    async def parse_ask(self, payload: bytes) -> AskRequest:
        """Read a request exactly as the MQTT path does (same limits, same errors)."""
        assert self.app.router is not None
        return await self.app.router.parse_ask(payload)

    async def ask(self, request: AskRequest) -> AnswerMessage:
        assert self.app.router is not None
        return await self.app.router.ask(request)

    def watches(self) -> WatchList:
        assert self.app.watches is not None
        return WatchList(watches=self.app.watches.specs(), updated_at=datetime.now(UTC))

    async def add_watch(self, payload: bytes) -> WatchSpec:
        """Read and add a watch as the MQTT path does; the watch limits may refuse it."""
        assert self.app.router is not None and self.app.watches is not None
        spec = self.app.router.parse_watch_add(payload)
        await self.app.watches.add(spec)
        return spec

    async def remove_watch(self, watch_id: str) -> bool:
        assert self.app.watches is not None
        return await self.app.watches.remove(watch_id)

    def events(self, watch_id: str | None, limit: int) -> list[WatchEvent]:
        return self.app.events.recent(watch_id, limit)

    # -------------------------------------------------------------------------------- health, metrics
    def readiness(self) -> tuple[bool, dict[str, object]]:
        app = self.app
        memory_ok = app.memory is not None and app.memory.state == MemoryState.READY
        mqtt_ok = app.link is not None and app.link.state == LinkState.CONNECTED
        ok = app.ready.is_set() and memory_ok and mqtt_ok
        return ok, {"memory": memory_ok, "mqtt": mqtt_ok, "model": app.ready.is_set()}

    async def sample(self) -> AgentSample:
        """Everything the state metrics export, read now."""
        app = self.app
        memory_ready = app.memory is not None and app.memory.state == MemoryState.READY
        stats = await app.memory.stats() if app.memory is not None else None
        streams = []
        caches = app.worker.engine.caches if app.worker is not None else None
        for stream_id, ingest in (app.ingests or {}).items():
            h = ingest.health
            s = stats.streams.get(stream_id) if stats else None
            streams.append(
                StreamSample(
                    stream=stream_id,
                    online=h.online,
                    chunks=h.chunks,
                    frames=h.frames,
                    drops=h.drops,
                    reconnects=h.reconnects,
                    stalls=h.stalls,
                    ingest_errors=h.ingest_errors,
                    memory_tokens=s.tokens if s else 0,
                    memory_bytes=s.bytes if s else 0,
                    memory_appended=s.appended if s else 0,
                    memory_evicted=s.evicted if s else 0,
                )
            )
        queues = {"inflight": app.questions.inflight if app.questions is not None else 0}
        if app.worker is not None:
            queues |= {"questions": app.worker.queued_questions, "ingest": app.worker.queued_chunks}
        counters = app.pictures.counters if app.pictures is not None else None
        decoder = app.worker.engine.adapter.decoder if app.worker is not None else None
        graphs = decoder if isinstance(decoder, StaticDecoder) else None
        return AgentSample(
            streams=streams,
            # a copy in one step: the model thread adds streams as they are asked about
            selector_caches=selector_cache_samples(caches.stats.copy() if caches is not None else {}),
            queue_depth=queues,
            ingest_lag_s=app.worker.shedder.lag_s if app.worker is not None else 0.0,
            ingest_shed_factor=app.worker.shed_factor if app.worker is not None else 1,
            mqtt_connected=app.link is not None and app.link.state == LinkState.CONNECTED,
            memory_ready=memory_ready,
            memory_pending_chunks=stats.pending_chunks if stats else 0,
            memory_dropped_chunks=stats.dropped_chunks if stats else 0,
            pictures_stored=counters.stored if counters else 0,
            pictures_evicted=counters.swept if counters else 0,
            picture_errors=counters.errors if counters else 0,
            decode_graph_answers=graphs.answers if graphs else 0,
            decode_graph_captures=graphs.captures if graphs else 0,
            decode_graph_too_long=graphs.too_long if graphs else 0,
        )

    async def metrics(self) -> bytes:
        return self.app.metrics.render(await self.sample())


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
