"""The question service: domain questions in, domain answers out (memory read, model, evidence pictures).

It knows nothing of MQTT or HTTP: `agent.router` reads wire requests into `Question`s, writes `Answer`s
back as wire messages and turns every `QuestionRefused` into the wire error of its `Refusal`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from agent.config import QuestionsSection
from agent.engine import Engine, EngineAnswer
from agent.evidence import Span, spans
from agent.kept_rows import KeptRowsStats, QuestionReads, answer_kept
from agent.memory import RetainedTokens, TokenMemory
from agent.memory.base import RetainedLayout
from agent.memory.errors import MemoryUnavailableError, TokenMemoryError
from agent.metrics import AgentMetrics
from agent.pictures import Pictures
from agent.tasks import TaskSet
from agent.worker import ModelWorker, QueueFull
from common.cancel import within

logger = logging.getLogger(__name__)

SnapshotSink = Callable[[str, bytes], Awaitable[None]]  # (path below the prefix, JPEG)


@dataclass(frozen=True)
class Question:
    """What is asked: about which streams, in which time window, with how many visual tokens."""

    id: str
    text: str
    streams: list[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    budget: int | None = None
    deadline: datetime | None = None


@dataclass(frozen=True)
class Answer:
    """The model's answer to a `Question`, its evidence, token counts and stage timings."""

    id: str
    question: str
    text: str
    evidence: list[Span]
    retained_tokens: int
    used_tokens: int
    model: str
    answered_at: datetime
    timings_ms: dict[str, float] = field(default_factory=dict)


class Refusal(StrEnum):
    """Why a question gets no answer."""

    SHUTTING_DOWN = "shutting_down"
    BUSY = "busy"  # too many questions in progress or waiting for the model
    DEADLINE_PASSED = "deadline_passed"
    UNKNOWN_STREAM = "unknown_stream"
    EMPTY_MEMORY = "empty_memory"
    MEMORY_UNAVAILABLE = "memory_unavailable"
    FAILED = "failed"  # the memory read failed, the model timed out, or a bug: see the log


class QuestionRefused(Exception):
    """A question the service does not answer, with the reason and one line for the asker."""

    def __init__(self, reason: Refusal, message: str, question_id: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.question_id = question_id


async def with_pictures(pictures: Pictures | None, evidence: list[Span]) -> tuple[list[Span], bytes | None]:
    """The evidence with its pictures' URLs, and the JPEG of the best pictured span (None: no pictures)."""
    if pictures is None or not evidence:
        return evidence, None
    named, best = await pictures.named(evidence)
    return named, (best[0][1] if best else None)


class QuestionService:
    """Answers `Question`s within the queue limit; every refusal is a `QuestionRefused`."""

    def __init__(
        self,
        *,
        worker: ModelWorker,
        memory: TokenMemory,
        streams: Callable[[], Awaitable[list[str]]],
        limits: QuestionsSection,
        metrics: AgentMetrics,
        model_name: str,
        pictures: Pictures | None = None,
        on_snapshot: SnapshotSink | None = None,
    ) -> None:
        self.worker = worker
        self.memory = memory
        self.streams = streams
        self.limits = limits
        self.metrics = metrics
        self.model_name = model_name
        self.pictures = pictures
        self.on_snapshot = on_snapshot
        self.accepting = True
        self.kept_rows = KeptRowsStats()
        self._inflight = TaskSet("questions")

    @property
    def inflight(self) -> int:
        """Questions accepted and not yet answered or refused."""
        return len(self._inflight)

    def submit(self, question: Question) -> asyncio.Task[Answer]:
        """Start answering `question` in a task of its own; refuses (`busy`) beyond `queue_size`."""
        if len(self._inflight) >= self.limits.queue_size:
            raise QuestionRefused(
                Refusal.BUSY, f"{len(self._inflight)} questions are in progress; retry later", question.id
            )
        return self._inflight.start(self.answer(question), name=f"ask-{question.id}")

    async def stop(self, timeout_s: float) -> None:
        """Refuse new questions, give those in progress up to `timeout_s`, then cancel the rest."""
        self.accepting = False
        await self._inflight.wait(timeout_s)
        await self._inflight.cancel(timeout_s)

    async def answer(self, question: Question) -> Answer:
        """Read the memory, queue the question for the model, name the evidence pictures."""
        started = time.perf_counter()
        if not self.accepting:
            raise QuestionRefused(
                Refusal.SHUTTING_DOWN, "the agent is shutting down; ask again later", question.id
            )
        _check_deadline(question)
        parts, reads = await self._candidates(question)
        queued = time.perf_counter()
        try:
            result: EngineAnswer = await within(
                self.worker.run_question(lambda e: self._run(e, question, parts, reads)),
                self.limits.timeout_s,
            )
        except QueueFull as exc:
            raise QuestionRefused(Refusal.BUSY, f"{exc}; retry later", question.id) from None
        except TimeoutError:
            raise QuestionRefused(
                Refusal.FAILED, f"no answer within {self.limits.timeout_s:.0f} s; retry later", question.id
            ) from None
        timings = {"read": (queued - started) * 1e3, **result.timings_ms}
        timings["total"] = (time.perf_counter() - started) * 1e3
        for stage, ms in timings.items():
            self.metrics.question_seconds.labels(stage).observe(ms / 1e3)
        evidence, snapshot = await with_pictures(self.pictures, spans(result))
        if snapshot is not None and self.on_snapshot is not None:
            await self.on_snapshot(f"{evidence[0].stream}/snapshot/answer", snapshot)
        return Answer(
            id=question.id,
            question=question.text,
            text=result.text,
            evidence=evidence,
            retained_tokens=result.retained_tokens,
            used_tokens=result.used_tokens,
            model=self.model_name,
            answered_at=datetime.now(UTC),
            timings_ms=timings,
        )

    def _run(
        self,
        engine: Engine,
        question: Question,
        parts: list[tuple[str, RetainedTokens]],
        reads: QuestionReads,
    ) -> EngineAnswer:
        _check_deadline(question)  # it may have passed while the question waited for the model
        layouts = [(s, r) for s, r in parts if isinstance(r, RetainedLayout)]
        if len(layouts) == len(parts):  # the cached Lite path read only the layout (agent.kept_rows)
            return answer_kept(engine, question.text, layouts, question.budget, reads, self.kept_rows)
        return engine.answer(question.text, [(s, r.tokens) for s, r in parts], question.budget)

    async def _candidates(self, question: Question) -> tuple[list[tuple[str, RetainedTokens]], QuestionReads]:
        known = await self.streams()
        wanted = question.streams or known
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise QuestionRefused(
                Refusal.UNKNOWN_STREAM,
                f"unknown streams {unknown}; known streams: {sorted(known)}",
                question.id,
            )
        since = question.since.timestamp() if question.since else None
        until = question.until.timestamp() if question.until else None
        kept_only = self.worker.engine.caches is not None  # scores need no embeddings: read the layout
        read = self.memory.read_layout if kept_only else self.memory.read
        try:
            retained: dict[str, RetainedTokens] = dict(await read(wanted, since=since, until=until))
        except MemoryUnavailableError as exc:  # addresses and causes stay in the log, not in the reply
            logger.warning("question %s: %s", question.id, exc)
            raise QuestionRefused(
                Refusal.MEMORY_UNAVAILABLE, "the token memory is unavailable; retry later", question.id
            ) from None
        except TokenMemoryError:
            logger.exception("question %s: reading the token memory failed", question.id)
            raise QuestionRefused(
                Refusal.FAILED, "reading the token memory failed (see the agent log)", question.id
            ) from None
        parts = [(s, retained[s]) for s in wanted if s in retained and len(retained[s]) > 0]
        if not parts:
            window = "" if since is None and until is None else " in the asked time window"
            raise QuestionRefused(
                Refusal.EMPTY_MEMORY, f"no video is remembered for {wanted}{window} yet", question.id
            )
        loop = asyncio.get_running_loop()
        return parts, QuestionReads(self.memory, loop, wanted, since, until, self.limits.timeout_s)


def _check_deadline(question: Question) -> None:
    if question.deadline is not None and question.deadline <= datetime.now(UTC):
        raise QuestionRefused(
            Refusal.DEADLINE_PASSED,
            f"deadline {question.deadline.isoformat()} passed before the question was picked up",
            question.id,
        )
