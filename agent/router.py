"""The request router: the one place where MQTT and HTTP requests meet the question and watch services.

It reads wire requests into domain requests, calls the question and watch services and the cluster, and
writes their results back; it is the one place domain refusals become wire errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection

from agent.cluster.member import ClusterMember
from agent.config import QuestionsSection
from agent.metrics import AgentMetrics
from agent.mqtt import (
    AnswerMessage,
    AskRequest,
    ErrorCode,
    ErrorMessage,
    IncomingMessage,
    MqttLink,
    RequestError,
    WatchSpec,
    parse_ask,
    parse_watch_add,
    parse_watch_remove,
)
from agent.questions import Answer, QuestionRefused, QuestionService, Refusal
from agent.tasks import TaskSet
from agent.watch_service import WatchService
from agent.wire import answer_message, question_of

logger = logging.getLogger(__name__)

ERROR_OF = {
    Refusal.SHUTTING_DOWN: ErrorCode.SHUTTING_DOWN,
    Refusal.BUSY: ErrorCode.QUEUE_FULL,
    Refusal.DEADLINE_PASSED: ErrorCode.DEADLINE_PASSED,
    Refusal.UNKNOWN_STREAM: ErrorCode.UNKNOWN_STREAM,
    Refusal.EMPTY_MEMORY: ErrorCode.EMPTY_MEMORY,
    Refusal.MEMORY_UNAVAILABLE: ErrorCode.MEMORY_UNAVAILABLE,
    Refusal.FAILED: ErrorCode.INTERNAL,
}
STOPPED = "the agent stopped before answering"


def request_error(refused: QuestionRefused, reply_to: str | None = None) -> RequestError:
    """The wire error of a refused question."""
    return RequestError(
        ERROR_OF[refused.reason], refused.message, request_id=refused.question_id, reply_to=reply_to
    )


class Router:
    """Serves the link's requests until cancelled; `ask`, `parse_*` serve the HTTP API the same way."""

    def __init__(
        self,
        link: MqttLink,
        *,
        questions: QuestionService,
        watches: WatchService,
        limits: QuestionsSection,
        metrics: AgentMetrics,
        known_streams: Callable[[], Awaitable[list[str]]],
        ingested_streams: Callable[[], Collection[str]],
        cluster: ClusterMember | None = None,
    ) -> None:
        self.link = link
        self.questions = questions
        self.watches = watches
        self.limits = limits
        self.metrics = metrics
        self.known_streams = known_streams
        self.ingested_streams = ingested_streams
        self.cluster = cluster
        self._replies = TaskSet("replies")

    # ------------------------------------------------------------------------------------------- loop
    async def run(self) -> None:
        """Dispatch every incoming message to its handler; a handler's bug never ends the loop."""
        topics = self.link.topics
        handlers = {
            "ask": self.on_ask if self.cluster is None else self.on_ask_journaled,
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
            try:
                await handlers[command[0]](message)
            except Exception:  # a handler bug must not stop the dispatcher
                logger.exception("handling a message on %s failed", message.topic)

    async def stop(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for the replies still being sent, then cancel them.

        A finished reply may start another task (a clustered agent's journal clean-up): wait for those too.
        """
        await self._replies.wait(timeout_s)
        await self._replies.cancel(timeout_s)

    # ---------------------------------------------------------------------------------------- questions
    async def parse_ask(self, payload: bytes, client: str | None = None) -> AskRequest:
        """Read an ask payload (MQTT or HTTP: the same limits, the same errors)."""
        return parse_ask(
            payload,
            max_question_chars=self.limits.max_question_chars,
            topics=self.link.topics,
            known_streams=await self.known_streams(),
            client=client,
        )

    async def on_ask_journaled(self, message: IncomingMessage) -> None:
        """A clustered agent journals a question before anything else: a survivor answers it if we die."""
        assert self.cluster is not None
        journal = self.cluster.journal
        entry = await journal.add(message)
        if entry is None:  # another agent claimed it (every agent receives every question)
            return
        task = await self.on_ask(message)
        if task is None:  # refused at once, the reply is out
            await journal.remove(entry)
        else:
            task.add_done_callback(lambda _: self._replies.start(journal.remove(entry)))

    async def on_ask(self, message: IncomingMessage) -> asyncio.Task[None] | None:
        """Answer an MQTT question in the background; None when it was refused at once."""
        try:
            request = await self.parse_ask(message.payload, self.link.topics.client_of(message.topic))
            answering = self._submit(request)
        except RequestError as exc:
            await self._refuse(exc, message)
            return None
        return self._replies.start(self._reply(request, message, answering), name=f"reply-{request.id}")

    async def ask(self, request: AskRequest) -> AnswerMessage:
        """Answer an HTTP question like an MQTT one (same queue limit, same errors, same counts)."""
        task = self._submit(request, count=True)
        try:
            answer = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the HTTP request went away; the question still runs to the end
            self._count(ErrorCode.SHUTTING_DOWN)
            raise RequestError(ErrorCode.SHUTTING_DOWN, STOPPED, request_id=request.id) from None
        except QuestionRefused as exc:
            error = request_error(exc)
            self._count(error.code)
            raise error from None
        except Exception:
            self._count(ErrorCode.INTERNAL)
            raise
        self._count("ok")
        return answer_message(answer)

    def _submit(self, request: AskRequest, *, count: bool = False) -> asyncio.Task[Answer]:
        try:
            return self.questions.submit(question_of(request))
        except QuestionRefused as exc:
            error = request_error(exc, request.reply_to)
            if count:
                self._count(error.code)
            raise error from None

    async def _reply(
        self, request: AskRequest, message: IncomingMessage, answering: asyncio.Task[Answer]
    ) -> None:
        try:
            answer = await answering
        except QuestionRefused as exc:
            await self._refuse(request_error(exc, request.reply_to), message)
            return
        except asyncio.CancelledError:
            error = RequestError(
                ErrorCode.SHUTTING_DOWN, STOPPED, request_id=request.id, reply_to=request.reply_to
            )
            await self._refuse(error, message)
            if not answering.cancelled():
                raise
            return
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
        self._count("ok")
        await self.link.reply(request, message, answer_message(answer).payload())

    async def _refuse(self, error: RequestError, message: IncomingMessage) -> None:
        self._count(error.code)
        await self.link.reply(error, message, ErrorMessage.from_error(error).payload())

    def _count(self, outcome: str) -> None:
        self.metrics.questions.labels(str(outcome)).inc()

    # ------------------------------------------------------------------------------------------ watches
    def parse_watch_add(self, payload: bytes, client: str | None = None) -> WatchSpec:
        """Read a watch/add payload (MQTT or HTTP) for the streams this agent ingests."""
        return parse_watch_add(
            payload,
            max_question_chars=self.limits.max_question_chars,
            topics=self.link.topics,
            known_streams=list(self.ingested_streams()),
            client=client,
        )

    async def _on_watch_add(self, message: IncomingMessage) -> None:
        try:
            spec = self.parse_watch_add(message.payload, self.link.topics.client_of(message.topic))
            await self.watches.add(spec)
        except RequestError as exc:
            await self._refuse(exc, message)

    async def _on_watch_remove(self, message: IncomingMessage) -> None:
        topics = self.link.topics
        try:
            client = topics.client_of(message.topic)
            removal = parse_watch_remove(message.payload, topics=topics, client=client)
        except RequestError as exc:
            await self._refuse(exc, message)
            return
        await self.watches.remove(removal.id)

    # ------------------------------------------------------------------------------------------ cluster
    async def _on_cluster_stream(self, message: IncomingMessage) -> None:
        assert self.cluster is not None
        try:
            await self.cluster.command(message.topic, message.payload)
        except ValueError as exc:
            await self._refuse(RequestError(ErrorCode.INVALID_REQUEST, str(exc)), message)
        except Exception:  # a Redis error must not stop the dispatcher
            logger.exception("cluster command on %s failed", message.topic)
