"""Questions: memory candidates for the asked streams and window, the worker's answer, an AnswerMessage."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from agent.config import QuestionsSection
from agent.engine import Engine, EngineAnswer
from agent.kept_rows import KeptRowsStats, QuestionReads, answer_kept
from agent.memory import RetainedTokens, TokenMemory
from agent.memory.base import RetainedLayout
from agent.memory.errors import MemoryUnavailableError, TokenMemoryError
from agent.metrics import AgentMetrics
from agent.mqtt import AnswerMessage, AskRequest, ErrorCode, Evidence, RequestError, TokenCounts
from agent.worker import ModelWorker, QueueFull

logger = logging.getLogger(__name__)


def rfc3339(unix_seconds: float) -> datetime:
    """A Unix time as an aware UTC datetime (serialised as RFC 3339)."""
    return datetime.fromtimestamp(unix_seconds, tz=UTC)


class QuestionService:
    """Answers `AskRequest`s; every refusal is a `RequestError` with the matching code."""

    def __init__(
        self,
        *,
        worker: ModelWorker,
        memory: TokenMemory,
        streams: Callable[[], Awaitable[list[str]]],
        limits: QuestionsSection,
        metrics: AgentMetrics,
        model_name: str,
    ) -> None:
        self.worker = worker
        self.memory = memory
        self.streams = streams
        self.limits = limits
        self.metrics = metrics
        self.model_name = model_name
        self.accepting = True
        self.kept_rows = KeptRowsStats()

    def _refuse(self, request: AskRequest, code: ErrorCode, message: str) -> RequestError:
        return RequestError(code, message, request_id=request.id, reply_to=request.reply_to)

    async def answer(self, request: AskRequest) -> AnswerMessage:
        """Read the memory, queue the question for the model, and build the answer message."""
        started = time.perf_counter()
        if not self.accepting:
            raise self._refuse(
                request, ErrorCode.SHUTTING_DOWN, "the agent is shutting down; ask again later"
            )
        request.check_deadline()
        parts, reads = await self._candidates(request)
        queued = time.perf_counter()
        try:
            result: EngineAnswer = await asyncio.wait_for(
                self.worker.run_question(lambda e: self._run(e, request, parts, reads)), self.limits.timeout_s
            )
        except QueueFull as exc:
            raise self._refuse(request, ErrorCode.QUEUE_FULL, f"{exc}; retry later") from None
        except TimeoutError:
            raise self._refuse(
                request, ErrorCode.INTERNAL, f"no answer within {self.limits.timeout_s:.0f} s; retry later"
            ) from None
        timings = {"read": (queued - started) * 1e3, **result.timings_ms}
        timings["total"] = (time.perf_counter() - started) * 1e3
        for stage, ms in timings.items():
            self.metrics.question_seconds.labels(stage).observe(ms / 1e3)
        return AnswerMessage(
            id=request.id,
            question=request.question,
            answer=result.text,
            evidence=[
                Evidence(
                    stream=e.stream_id,
                    start=rfc3339(e.span.start),
                    end=rfc3339(e.span.end),
                    score=e.span.score,
                )
                for e in result.evidence
            ],
            tokens=TokenCounts(retained=result.retained_tokens, used=result.used_tokens),
            timings_ms=timings,
            model=self.model_name,
            answered_at=datetime.now(UTC),
        )

    def _run(
        self,
        engine: Engine,
        request: AskRequest,
        parts: list[tuple[str, RetainedTokens]],
        reads: QuestionReads,
    ) -> EngineAnswer:
        request.check_deadline()  # it may have passed while the question waited for the model
        layouts = [(s, r) for s, r in parts if isinstance(r, RetainedLayout)]
        if len(layouts) == len(parts):  # the cached Lite path read only the layout (agent.kept_rows)
            return answer_kept(engine, request.question, layouts, request.budget, reads, self.kept_rows)
        return engine.answer(request.question, [(s, r.tokens) for s, r in parts], request.budget)

    async def _candidates(
        self, request: AskRequest
    ) -> tuple[list[tuple[str, RetainedTokens]], QuestionReads]:
        known = await self.streams()
        wanted = request.streams or known
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise self._refuse(
                request,
                ErrorCode.UNKNOWN_STREAM,
                f"unknown streams {unknown}; known streams: {sorted(known)}",
            )
        since = request.since.timestamp() if request.since else None
        until = request.until.timestamp() if request.until else None
        kept_only = self.worker.engine.caches is not None  # scores need no embeddings: read the layout
        read = self.memory.read_layout if kept_only else self.memory.read
        try:
            retained: dict[str, RetainedTokens] = dict(await read(wanted, since=since, until=until))
        except MemoryUnavailableError as exc:  # addresses and causes stay in the log, not in the reply
            logger.warning("question %s: %s", request.id, exc)
            raise self._refuse(
                request, ErrorCode.MEMORY_UNAVAILABLE, "the token memory is unavailable; retry later"
            ) from None
        except TokenMemoryError:
            logger.exception("question %s: reading the token memory failed", request.id)
            raise self._refuse(
                request, ErrorCode.INTERNAL, "reading the token memory failed (see the agent log)"
            ) from None
        parts = [(s, retained[s]) for s in wanted if s in retained and len(retained[s]) > 0]
        if not parts:
            window = "" if since is None and until is None else " in the asked time window"
            raise self._refuse(
                request, ErrorCode.EMPTY_MEMORY, f"no video is remembered for {wanted}{window} yet"
            )
        loop = asyncio.get_running_loop()
        return parts, QuestionReads(self.memory, loop, wanted, since, until, self.limits.timeout_s)
