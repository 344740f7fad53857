"""The composition root: builds every component from the config, starts them in order, stops in reverse.

Start order (each step needs the ones before it):
    1. metrics          6. question service and watches
    2. model + engine   7. HTTP API, console, metrics and health
    3. token memory     8. command dispatcher (MQTT questions and watch commands)
    4. model worker     9. one ingest task per stream, status publisher
    5. MQTT link
With `cluster.enabled`, step 9 is a `ClusterMember` instead: it ingests the streams whose leases it holds,
and each question is claimed by one agent in Redis (agent/cluster, docs/cluster.md).
Stop (SIGTERM, or the end of `run_until`): ingest stops first (a clustered agent releases its leases),
questions in flight get up to `shutdown_timeout_s` to finish (new ones are refused with `shutting_down`),
`stopped` is published, the memory is flushed and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from agent.cluster.member import ClusterMember
from agent.config import AgentConfig, StreamSection
from agent.engine import Engine, EngineAnswer
from agent.homeassistant import HomeAssistant
from agent.ingest import StreamHealth, StreamIngest
from agent.memory import MemoryState, TokenMemory, open_memory
from agent.memory.errors import TokenMemoryError
from agent.memory.thumbnails import open_pictures
from agent.metrics import AgentMetrics
from agent.models import resolve_model
from agent.mqtt import (
    AnswerMessage,
    AskRequest,
    ErrorCode,
    ErrorMessage,
    Evidence,
    IncomingMessage,
    LinkState,
    MqttLink,
    RequestError,
    StreamStatus,
    WatchEvent,
    WatchList,
    WatchSpec,
    parse_ask,
    parse_watch_add,
    parse_watch_remove,
)
from agent.pictures import Pictures
from agent.qa import QuestionService, rfc3339
from agent.watches import WatchBook, WatchState
from agent.web import AgentFacade, EventLog, WebServer
from agent.worker import ModelWorker, QueueFull
from flexselect.adapters import VideoLLMAdapter, load_adapter

logger = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0


def build_adapter(config: AgentConfig) -> VideoLLMAdapter:
    """Load the configured model on its device."""
    import torch

    device = config.model.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = config.model.dtype if config.model.dtype == "auto" else getattr(torch, config.model.dtype)
    return load_adapter(resolve_model(config.model.name), dtype=dtype, device=device)


class AgentApp:
    """One running agent; `run()` serves until `stop()` (or the `until` awaitable) and returns cleanly."""

    def __init__(self, config: AgentConfig, *, adapter: VideoLLMAdapter | None = None) -> None:
        self.config = config
        self.metrics = AgentMetrics()
        self._adapter = adapter
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.ingests: dict[str, StreamIngest] = {}
        self.watches = WatchBook(list(config.watches), config.watch_limits)
        self._inflight: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.memory: TokenMemory | None = None
        self.worker: ModelWorker | None = None
        self.link: MqttLink | None = None
        self.http: WebServer | None = None
        self.questions: QuestionService | None = None
        self.pictures: Pictures | None = None
        self.events = EventLog()
        self.homeassistant: HomeAssistant | None = None
        self.cluster: ClusterMember | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Ask the agent to stop (safe from signal handlers on the loop)."""
        self._stop.set()

    async def run(self, until: Callable[[AgentApp], Awaitable[None]] | None = None) -> None:
        """Start everything, serve, and stop in reverse order; `until(app)` ending also stops it."""
        adapter = self._adapter or await asyncio.to_thread(build_adapter, self.config)
        engine = Engine(adapter, self.config.model, standing_prompts=self._standing_prompts())
        async with contextlib.AsyncExitStack() as stack:
            await self._start_services(stack, engine)
            await self._publish_watches()
            if self.homeassistant is not None:
                await self.homeassistant.announce([s.id for s in self.config.streams], self.watches.specs())
            dispatcher = asyncio.create_task(self._dispatch(), name="dispatcher")
            tasks = await self._start_streams(adapter)
            status = asyncio.create_task(self._status_loop(), name="status")
            self.ready.set()
            http = f"http://{self.http.host}:{self.http.port}" if self.http else "off"
            logger.info(
                "agent ready: %d streams, model %s, http %s", len(tasks), self.config.model.name, http
            )
            failure = await self._serve(until)
            await self._shutdown(tasks, dispatcher, status)
        if failure is not None:
            raise failure

    async def _start_services(self, stack: contextlib.AsyncExitStack, engine: Engine) -> None:
        """Memory, worker, MQTT link, question service and HTTP, each closed by `stack` in reverse."""
        self.memory = await stack.enter_async_context(open_memory(self.config.memory))
        if self.config.pictures.enabled:
            store = await stack.enter_async_context(open_pictures(self.config.memory, self.config.pictures))
            self.pictures = Pictures(store, self.memory, self.config.pictures)
        q = self.config.questions
        self.worker = await stack.enter_async_context(
            ModelWorker(
                engine,
                # questions, the watches' share, and one standing-prompt update: none takes another's slot
                question_slots=q.queue_size + self.config.watch_limits.max_running + 1,
                chunk_slots=self.config.ingest.queue_chunks,
                max_batch_chunks=self.config.ingest.max_batch_chunks,
                max_consecutive=q.max_consecutive,
            )
        )
        group = self.config.cluster.share_group
        topics = self.config.cluster.enabled and MqttLink(self.config.mqtt).topics.cluster_commands(group)
        self.link = MqttLink(self.config.mqtt, subscriptions=topics or None)
        await self.link.__aenter__()
        stack.push_async_callback(self.link.close, stopped=False)  # a crash leaves `offline`
        self.questions = QuestionService(
            worker=self.worker,
            memory=self.memory,
            streams=self.known_streams,
            limits=q,
            metrics=self.metrics,
            model_name=self.config.model.name,
        )
        if self.config.http.enabled:
            self.http = await stack.enter_async_context(WebServer(self.config.http, AgentFacade(self)))
            if self.pictures is not None:
                self.pictures.set_base_url(self.http.base_url)
        if self.config.homeassistant.enabled:
            self.homeassistant = HomeAssistant(self.config.homeassistant, self.link, self.config.mqtt)

    async def _serve(self, until: Callable[[AgentApp], Awaitable[None]] | None) -> BaseException | None:
        """Wait for `stop()` or for `until(app)` to end; returns the error `until` raised, if any."""
        waiters = [asyncio.create_task(self._stop.wait())]
        if until is not None:
            waiters.append(asyncio.create_task(until(self)))
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return next((t.exception() for t in done if not t.cancelled() and t.exception()), None)

    async def _shutdown(
        self, ingest: list[asyncio.Task[None]], dispatcher: asyncio.Task[None], status: asyncio.Task[None]
    ) -> None:
        logger.info("stopping: ingest first, then questions (up to %.0f s)", self.config.shutdown_timeout_s)
        if self.cluster is not None:
            await self.cluster.handover()
        for task in ingest:
            task.cancel()
        await asyncio.gather(*ingest, return_exceptions=True)
        assert self.questions is not None and self.link is not None
        self.questions.accepting = False
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self.config.shutdown_timeout_s)
        for task in (*self._inflight, dispatcher, status, *self._background):
            task.cancel()
        await asyncio.gather(*self._inflight, dispatcher, status, *self._background, return_exceptions=True)
        await self._publish_statuses()
        if self.cluster is not None:
            await self.cluster.leave()
        await self.link.close(stopped=True)

    # ----------------------------------------------------------------------------------------- ingest
    async def _start_streams(self, adapter: VideoLLMAdapter) -> list[asyncio.Task[None]]:
        """Ingest every configured stream, or (clustered) join the cluster, which ingests its leased ones."""
        if not self.config.cluster.enabled:
            return [self._start_ingest(s, adapter) for s in self.config.streams]
        from agent.memory.redis import RedisTokenMemory

        assert isinstance(self.memory, RedisTokenMemory) and self.link is not None
        link = self.link
        self.cluster = ClusterMember(
            self.config.cluster,
            self.memory,
            start_ingest=lambda section: self._start_ingest(section, adapter),
            stop_ingest=lambda stream: self.ingests.pop(stream, None) and None,
            on_adopted=self._on_ask_journaled,
            publish_status=lambda s: link.publish(link.topics.cluster_status, s.payload(), retain=True),
            metrics=self.metrics.registry,
        )
        await self.cluster.start(list(self.config.streams))
        return []

    def _start_ingest(self, section: StreamSection, adapter: VideoLLMAdapter) -> asyncio.Task[None]:
        assert self.worker is not None and self.memory is not None
        ingest = StreamIngest(
            section,
            worker=self.worker,
            memory=self.memory,
            temporal_patch=getattr(adapter, "temporal_patch", 1),
            on_state=self._stream_state_changed,
            on_chunk=self._chunk_ingested,
            on_frames=self._frames_ingested if self.pictures is not None else None,
        )
        self.ingests[section.id] = ingest
        return asyncio.create_task(ingest.run(), name=f"ingest-{section.id}")

    def _stream_state_changed(self, health: StreamHealth) -> None:
        self._spawn(self._publish_status(health.stream_id))

    async def _frames_ingested(
        self, stream_id: str, frames: np.ndarray, times: np.ndarray, patch: int
    ) -> None:
        assert self.pictures is not None
        await self.pictures.record(stream_id, frames, times, patch)

    async def _chunk_ingested(self, stream_id: str, media_end: float) -> None:
        for watch in self.watches.claim(stream_id, time.monotonic()):
            self._spawn(self._evaluate_watch(watch, stream_id, media_end))

    # ------------------------------------------------------------------------------------------ watches
    async def _evaluate_watch(self, watch: WatchState, stream_id: str, media_end: float) -> None:
        try:
            await self._run_watch(watch, stream_id, media_end)
        except (QueueFull, TokenMemoryError) as exc:  # it stays due: the next chunk tries again
            logger.warning("watch %s skipped on %s: %s", watch.spec.id, stream_id, exc)
        finally:
            self.watches.release()

    async def _run_watch(self, watch: WatchState, stream_id: str, media_end: float) -> None:
        assert self.memory is not None and self.worker is not None and self.link is not None
        since = media_end - self.config.ingest.watch_window_s
        retained = await self.memory.read([stream_id], since=since)
        if stream_id not in retained or len(retained[stream_id]) == 0:
            return
        tokens = retained[stream_id].tokens
        result: EngineAnswer = await self.worker.run_question(
            lambda e: e.answer(watch.spec.question, [(stream_id, tokens)], None)
        )
        if not watch.observe(stream_id, result.text, time.monotonic()):
            return
        event = WatchEvent(
            watch_id=watch.spec.id,
            stream=stream_id,
            question=watch.spec.question,
            answer=result.text,
            evidence=_evidence(result),
            at=datetime.now(UTC),
        )
        event, snapshot = await self._with_pictures(event)
        self.metrics.watch_events.labels(watch.spec.id).inc()
        self.events.add(event)
        await self.link.publish(self.link.topics.events(stream_id), event.payload())
        await self._publish_snapshot(f"{stream_id}/snapshot/watch/{watch.spec.id}", snapshot)
        if self.homeassistant is not None:
            await self.homeassistant.watch_fired(event)

    async def _publish_watches(self) -> None:
        assert self.link is not None
        listing = WatchList(watches=self.watches.specs(), updated_at=datetime.now(UTC))
        await self.link.publish(self.link.topics.watches, listing.payload(), retain=True)

    async def known_streams(self) -> list[str]:
        """Configured streams plus those the memory still remembers (e.g. from before a restart)."""
        assert self.memory is not None
        remembered: list[str] = []
        if self.memory.state == MemoryState.READY:
            with contextlib.suppress(TokenMemoryError):  # lost meanwhile: the read answers memory_unavailable
                remembered = await self.memory.streams()
        shared = list(self.cluster.streams) if self.cluster is not None else []
        return sorted({*self.ingests, *remembered, *shared})

    def _standing_prompts(self) -> list[str]:
        return [*self.config.ingest.standing_prompts, *self.watches.questions()]

    # --------------------------------------------------------------------------------------- dispatching
    async def _dispatch(self) -> None:
        assert self.link is not None
        topics = self.link.topics
        handlers = {
            "ask": self._on_ask if self.cluster is None else self._on_ask_journaled,
            "watch/add": self._on_watch_add,
            "watch/remove": self._on_watch_remove,
        }
        cluster_topics = (topics.cluster_stream_add, topics.cluster_stream_remove) if self.cluster else ()
        async for message in self.link.messages():
            if message.topic in cluster_topics:
                await self._on_cluster_stream(message)
                continue
            command = topics.command_of(message.topic)
            if command is None:
                continue
            if message.retain:  # replayed by the broker at (re)subscribe: it was handled when it was new
                logger.warning("ignored a retained request on %s (never retain requests)", message.topic)
                self.metrics.questions.labels("retained_ignored").inc()
                continue
            handler = handlers[command[0]]
            try:
                await handler(message)
            except Exception:  # a handler bug must not stop the dispatcher
                logger.exception("handling a message on %s failed", message.topic)

    async def _on_ask_journaled(self, message: IncomingMessage) -> None:
        """A clustered agent journals a question before anything else: a survivor answers it if we die."""
        assert self.cluster is not None
        journal = self.cluster.journal
        entry = await journal.add(message)
        if entry is None:  # another agent claimed it (every agent receives every question)
            return
        task = await self._on_ask(message)
        if task is None:  # refused at once, the reply is out
            await journal.remove(entry)
        else:
            task.add_done_callback(lambda _: self._spawn(journal.remove(entry)))

    async def _on_ask(self, message: IncomingMessage) -> asyncio.Task[None] | None:
        assert self.link is not None and self.questions is not None
        try:
            request = parse_ask(
                message.payload,
                max_question_chars=self.config.questions.max_question_chars,
                topics=self.link.topics,
                known_streams=await self.known_streams(),
                client=self.link.topics.client_of(message.topic),
            )
        except RequestError as exc:
            await self._refuse(exc, message)
            return None
        if len(self._inflight) >= self.config.questions.queue_size:
            error = RequestError(
                ErrorCode.QUEUE_FULL,
                f"{len(self._inflight)} questions are in progress; retry later",
                request_id=request.id,
                reply_to=request.reply_to,
            )
            await self._refuse(error, message)
            return None
        task = asyncio.create_task(self._answer(request, message), name=f"ask-{request.id}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def ask(self, request: AskRequest) -> AnswerMessage:
        """Answer a request from the HTTP API like one from MQTT (same queue limit, same errors)."""
        if len(self._inflight) >= self.config.questions.queue_size:
            error = RequestError(
                ErrorCode.QUEUE_FULL,
                f"{len(self._inflight)} questions are in progress; retry later",
                request_id=request.id,
            )
            self.metrics.questions.labels(str(error.code)).inc()
            raise error
        task = asyncio.create_task(self._answer_with_pictures(request), name=f"ask-http-{request.id}")
        self._inflight.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._inflight.discard)  # type: ignore[arg-type]
        try:
            answer = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the HTTP request went away; the question still runs to the end
            self.metrics.questions.labels(str(ErrorCode.SHUTTING_DOWN)).inc()
            raise RequestError(
                ErrorCode.SHUTTING_DOWN, "the agent stopped before answering", request_id=request.id
            ) from None
        except RequestError as exc:
            self.metrics.questions.labels(str(exc.code)).inc()
            raise
        except Exception:
            self.metrics.questions.labels(str(ErrorCode.INTERNAL)).inc()
            raise
        self.metrics.questions.labels("ok").inc()
        return answer

    async def _answer_with_pictures(self, request: AskRequest) -> AnswerMessage:
        assert self.questions is not None
        answer, snapshot = await self._with_pictures(await self.questions.answer(request))
        if answer.evidence:
            await self._publish_snapshot(f"{answer.evidence[0].stream}/snapshot/answer", snapshot)
        return answer

    async def _with_pictures(self, message: Any) -> tuple[Any, bytes | None]:
        """The answer or event with its evidence pictures named, and the best picture's JPEG."""
        if self.pictures is None or not message.evidence:
            return message, None
        evidence, best = await self.pictures.named(message.evidence)
        return message.model_copy(update={"evidence": evidence}), (best[0][1] if best else None)

    async def _publish_snapshot(self, path: str, jpeg: bytes | None) -> None:
        """The JPEG of the best evidence on `<prefix>/<path>`, retained, as Frigate publishes snapshots."""
        if jpeg is None or self.link is None or not self.config.pictures.mqtt_snapshots:
            return
        await self.link.publish(f"{self.link.topics.prefix}/{path}", jpeg, retain=True)

    async def _answer(self, request: AskRequest, message: IncomingMessage) -> None:
        assert self.link is not None and self.questions is not None
        try:
            answer = await self._answer_with_pictures(request)
        except RequestError as exc:
            await self._refuse(exc, message)
            return
        except asyncio.CancelledError:
            error = RequestError(
                ErrorCode.SHUTTING_DOWN,
                "the agent stopped before answering",
                request_id=request.id,
                reply_to=request.reply_to,
            )
            await self._refuse(error, message)
            raise
        except Exception:
            logger.exception("question %s failed", request.id)
            error = RequestError(
                ErrorCode.INTERNAL,
                "the question failed inside the agent (see its log); retry later",
                request_id=request.id,
                reply_to=request.reply_to,
            )
            await self._refuse(error, message)
            return
        self.metrics.questions.labels("ok").inc()
        await self.link.reply(request, message, answer.payload())

    async def _refuse(self, error: RequestError, message: IncomingMessage) -> None:
        assert self.link is not None
        self.metrics.questions.labels(str(error.code)).inc()
        await self.link.reply(error, message, ErrorMessage.from_error(error).payload())

    async def _on_watch_add(self, message: IncomingMessage) -> None:
        assert self.link is not None
        try:
            spec = parse_watch_add(
                message.payload,
                max_question_chars=self.config.questions.max_question_chars,
                topics=self.link.topics,
                known_streams=list(self.ingests),
                client=self.link.topics.client_of(message.topic),
            )
            await self.add_watch(spec)
        except RequestError as exc:
            await self._refuse(exc, message)

    async def add_watch(self, spec: WatchSpec) -> None:
        """Add or replace a standing question (from MQTT or HTTP).

        Raises:
            RequestError: the watch limits refuse it (`too_many_watches`, or an interval below the floor).
        """
        self.watches.add(spec)
        await self._standing_changed()
        if self.homeassistant is not None:
            await self.homeassistant.watch_added(spec)

    async def _on_cluster_stream(self, message: IncomingMessage) -> None:
        assert self.cluster is not None
        try:
            await self.cluster.command(message.topic, message.payload)
        except ValueError as exc:
            await self._refuse(RequestError(ErrorCode.INVALID_REQUEST, str(exc)), message)
        except Exception:  # a Redis error must not stop the dispatcher
            logger.exception("cluster command on %s failed", message.topic)

    async def _on_watch_remove(self, message: IncomingMessage) -> None:
        assert self.link is not None
        try:
            removal = parse_watch_remove(
                message.payload, topics=self.link.topics, client=self.link.topics.client_of(message.topic)
            )
        except RequestError as exc:
            await self._refuse(exc, message)
            return
        await self.remove_watch(removal.id)

    async def remove_watch(self, watch_id: str) -> bool:
        """Remove a standing question; False when no watch had that id."""
        if not self.watches.remove(watch_id):
            return False
        await self._standing_changed()
        if self.homeassistant is not None:
            await self.homeassistant.watch_removed(watch_id)
        return True

    async def _standing_changed(self) -> None:
        assert self.worker is not None
        prompts = self._standing_prompts()
        await self.worker.run_question(lambda e: e.set_standing_prompts(prompts))
        await self._publish_watches()

    # ------------------------------------------------------------------------------------------- status
    async def _status_loop(self) -> None:
        while True:
            await self._publish_statuses()
            await asyncio.sleep(STATUS_INTERVAL_S)

    async def _publish_statuses(self) -> None:
        for stream_id in list(self.ingests):
            await self._publish_status(stream_id)

    async def _publish_status(self, stream_id: str) -> None:
        assert self.link is not None and self.memory is not None
        if self.link.state in (LinkState.STOPPED, LinkState.NEW):
            return
        ingest = self.ingests.get(stream_id)
        if ingest is None:  # handed over meanwhile
            return
        health = ingest.health
        stats = (await self.memory.stats(stream_id)).streams.get(stream_id)
        tokens, nbytes = (stats.tokens, stats.bytes) if stats else (0, 0)
        now = time.time()
        status = StreamStatus(
            stream=stream_id,
            state=health.state.value,
            online=health.online,
            fps=health.fps(now),
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

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _evidence(result: EngineAnswer) -> list[Evidence]:
    return [
        Evidence(stream=e.stream_id, start=rfc3339(e.span.start), end=rfc3339(e.span.end), score=e.span.score)
        for e in result.evidence
    ]
