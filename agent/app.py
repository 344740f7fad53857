"""The agent's wiring: builds every part from the config, starts them in order and stops them in reverse.

Build (each part needs the ones before it):
    1. model + engine (standing prompts: the config's and the watches')
    2. token memory, evidence pictures, model worker, MQTT link
    3. announcer, question service, watch service, ingests
    4. request router and cluster member (clustered agents only)
    5. HTTP API, console, metrics and health
Start: announce the watches; the router, ingest (every stream, or the cluster's share), the status loop.
Stop (SIGTERM, or the end of `until`), every step bounded so nothing keeps the loop alive:
    ingest first (a clustered agent hands its streams over), questions in flight get up to
    `shutdown_timeout_s` (new ones are refused with `shutting_down`), their replies go out, the router and
    the status loop end, `stopped` is published and the link closes, then HTTP, worker and memory close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from agent import runtime
from agent.announcer import Announcer
from agent.cluster.member import ClusterMember
from agent.config import AgentConfig
from agent.event_log import EventLog
from agent.homeassistant import HomeAssistant
from agent.ingests import Ingests
from agent.memory import TokenMemory
from agent.metrics import AgentMetrics
from agent.mqtt import MqttLink
from agent.pictures import Pictures
from agent.questions import QuestionService
from agent.router import Router
from agent.tasks import TaskSet, bounded_step
from agent.watch_service import WatchService
from agent.watches import WatchBook
from agent.web import AgentFacade, WebServer
from agent.worker import ModelWorker
from flexselect.adapters import VideoLLMAdapter

logger = logging.getLogger(__name__)

STOP_STEP_S = 10.0  # the longest any one stop step may take, beyond the questions' own grace


class AgentApp:
    """One running agent; `run()` serves until `stop()` (or the `until` awaitable) and returns cleanly."""

    def __init__(self, config: AgentConfig, *, adapter: VideoLLMAdapter | None = None) -> None:
        self.config = config
        self.metrics = AgentMetrics()
        self.events = EventLog()
        self.ready = asyncio.Event()
        self._adapter = adapter
        self._stop = asyncio.Event()
        # built by run(), in build order
        self.memory: TokenMemory | None = None
        self.pictures: Pictures | None = None
        self.worker: ModelWorker | None = None
        self.link: MqttLink | None = None
        self.homeassistant: HomeAssistant | None = None
        self.announcer: Announcer | None = None
        self.questions: QuestionService | None = None
        self.watches: WatchService | None = None
        self.ingests: Ingests | None = None
        self.router: Router | None = None
        self.cluster: ClusterMember | None = None
        self.http: WebServer | None = None

    def stop(self) -> None:
        """Ask the agent to stop (safe from signal handlers on the loop)."""
        self._stop.set()

    async def known_streams(self) -> list[str]:
        """Ingested streams, those the memory remembers (e.g. from before a restart) and the cluster's."""
        assert self.memory is not None and self.ingests is not None
        return await runtime.known_streams(self.ingests, self.memory, self.cluster)

    async def run(self, until: Callable[[AgentApp], Awaitable[None]] | None = None) -> None:
        """Build, start, serve until `stop()` or the end of `until(app)`, then stop in reverse order."""
        async with contextlib.AsyncExitStack() as stack:
            await self._build(stack)
            loops = await self._start()
            failure = await runtime.serve_until(self._stop.wait(), until(self) if until is not None else None)
            await self._shutdown(loops)
        if failure is not None:
            raise failure

    async def _build(self, stack: contextlib.AsyncExitStack) -> None:
        """Every part, in build order; `stack` closes those holding resources (HTTP, link, worker, memory)."""
        config = self.config
        adapter = self._adapter or await asyncio.to_thread(runtime.build_adapter, config)
        book = WatchBook(list(config.watches), config.watch_limits)
        engine = runtime.build_engine(adapter, config, book)
        self.memory, self.pictures, self.worker, self.link = await runtime.open_parts(stack, config, engine)
        if config.homeassistant.enabled:
            self.homeassistant = HomeAssistant(config.homeassistant, self.link, config.mqtt)
        self.announcer = Announcer(
            self.link,
            memory=self.memory,
            pictures=self.pictures,
            events=self.events,
            metrics=self.metrics,
            snapshots=config.pictures.mqtt_snapshots,
            homeassistant=self.homeassistant,
        )
        self.questions = QuestionService(
            worker=self.worker,
            memory=self.memory,
            streams=self.known_streams,
            limits=config.questions,
            metrics=self.metrics,
            model_name=config.model.name,
            pictures=self.pictures,
            on_snapshot=self.announcer.snapshot,
        )
        self.watches = WatchService(
            book,
            worker=self.worker,
            memory=self.memory,
            window_s=config.ingest.watch_window_s,
            standing_prompts=config.ingest.standing_prompts,
            listener=self.announcer,
        )
        self.ingests = self.announcer.ingests = Ingests(
            worker=self.worker,
            memory=self.memory,
            temporal_patch=engine.temporal_patch,
            on_state=self.announcer.stream_changed,
            on_chunk=self.watches.chunk_stored,
            on_frames=self.pictures.record if self.pictures is not None else None,
        )
        self.router = Router(
            self.link,
            questions=self.questions,
            watches=self.watches,
            limits=config.questions,
            metrics=self.metrics,
            known_streams=self.known_streams,
            ingested_streams=lambda: list(self.ingests or ()),
        )
        if config.cluster.enabled:  # it ingests the streams whose leases it holds; questions it adopts
            self.cluster = self.router.cluster = runtime.cluster_member(
                config, self.memory, self.ingests, self.link, self.metrics, self.router.on_ask_journaled
            )
        if config.http.enabled:
            self.http = await stack.enter_async_context(WebServer(config.http, AgentFacade(self)))
            if self.pictures is not None:
                self.pictures.set_base_url(self.http.base_url)

    async def _start(self) -> TaskSet:
        """Announce, then start the router, ingest and the status loop (the loops `_shutdown` ends)."""
        assert self.announcer is not None and self.watches is not None and self.router is not None
        assert self.ingests is not None
        streams = self.config.streams
        await self.announcer.announce([s.id for s in streams], self.watches.specs())
        loops = TaskSet("the router and the status loop")
        loops.start(self.router.run(), name="router")
        await runtime.start_ingest(streams, self.ingests, self.cluster)
        loops.start(self.announcer.run_status(), name="status")
        self.ready.set()
        http = self.http.address if self.http else "off"
        logger.info(
            "agent ready: %d streams, model %s, http %s", len(self.ingests), self.config.model.name, http
        )
        return loops

    async def _shutdown(self, loops: TaskSet) -> None:
        """Stop in reverse start order; every step is bounded (issue 18: a stop must never hang)."""
        assert self.ingests is not None and self.questions is not None and self.watches is not None
        assert self.router is not None and self.announcer is not None and self.link is not None
        grace = self.config.shutdown_timeout_s
        logger.info("stopping: ingest first, then questions (up to %.0f s)", grace)
        if self.cluster is not None:
            await bounded_step(self.cluster.handover(), STOP_STEP_S, "cluster handover")
        await self.ingests.stop(STOP_STEP_S)
        await self.questions.stop(grace)
        await self.router.stop(STOP_STEP_S)
        await self.watches.stop(STOP_STEP_S)
        await loops.cancel(STOP_STEP_S)
        await self.announcer.stop(STOP_STEP_S)
        await bounded_step(self.announcer.publish_statuses(), STOP_STEP_S, "the last status")
        if self.cluster is not None:
            await bounded_step(self.cluster.leave(), STOP_STEP_S, "leaving the cluster")
        await self.link.close(stopped=True)
