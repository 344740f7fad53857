"""The watch service: standing questions evaluated on each new chunk, within the watch limits.

It adds and removes watches (`WatchBook`), keeps the model's standing prompts in step, and after a
chunk of a stream is stored runs the due watches on that stream's recent memory. A watch whose answer
raises an event is handed to `on_fired` as a `WatchFired`; publishing it is the announcer's job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from agent.engine import EngineAnswer
from agent.evidence import Span, spans
from agent.memory import TokenMemory
from agent.memory.errors import TokenMemoryError
from agent.mqtt import WatchSpec
from agent.tasks import TaskSet
from agent.watches import WatchBook, WatchState
from agent.worker import ModelWorker, QueueFull

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchFired:
    """A watch's answer on one stream raised an event."""

    watch: WatchSpec
    stream: str
    answer: str
    evidence: list[Span]
    at: datetime


class WatchListener(Protocol):
    """Who hears of the watches' changes and events (the announcer)."""

    async def watch_added(self, spec: WatchSpec, watches: list[WatchSpec]) -> None: ...

    async def watch_removed(self, watch_id: str, watches: list[WatchSpec]) -> None: ...

    async def watch_fired(self, fired: WatchFired) -> None: ...


class WatchService:
    """The watches in force and their evaluations; `stop()` cancels evaluations still running."""

    def __init__(
        self,
        book: WatchBook,
        *,
        worker: ModelWorker,
        memory: TokenMemory,
        window_s: float,
        standing_prompts: list[str],
        listener: WatchListener,
    ) -> None:
        self.book = book
        self.worker = worker
        self.memory = memory
        self.window_s = window_s
        self._base_prompts = list(standing_prompts)
        self.listener = listener
        self._running = TaskSet("watch evaluations")

    def __len__(self) -> int:
        return len(self.book)

    def specs(self) -> list[WatchSpec]:
        return self.book.specs()

    def standing_prompts(self) -> list[str]:
        """The configured standing prompts and every watch's question (they steer the ingest score)."""
        return [*self._base_prompts, *self.book.questions()]

    async def add(self, spec: WatchSpec) -> None:
        """Add or replace a standing question.

        Raises:
            RequestError: the watch limits refuse it (`too_many_watches`, or an interval below the floor).
        """
        self.book.add(spec)
        await self._standing_changed()
        await self.listener.watch_added(spec, self.specs())

    async def remove(self, watch_id: str) -> bool:
        """Remove a standing question; False when no watch had that id."""
        if not self.book.remove(watch_id):
            return False
        await self._standing_changed()
        await self.listener.watch_removed(watch_id, self.specs())
        return True

    async def chunk_stored(self, stream_id: str, media_end: float) -> None:
        """A chunk of `stream_id` up to `media_end` is in memory: start the watches due on it."""
        for watch in self.book.claim(stream_id, time.monotonic()):
            self._running.start(self._evaluate(watch, stream_id, media_end))

    async def stop(self, timeout_s: float) -> None:
        """Cancel the evaluations in progress and wait for them (at most `timeout_s`)."""
        await self._running.cancel(timeout_s)

    async def _standing_changed(self) -> None:
        prompts = self.standing_prompts()
        await self.worker.run_question(lambda e: e.set_standing_prompts(prompts))

    async def _evaluate(self, watch: WatchState, stream_id: str, media_end: float) -> None:
        try:
            fired = await self._run(watch, stream_id, media_end)
            if fired is not None:
                await self.listener.watch_fired(fired)
        except (QueueFull, TokenMemoryError) as exc:  # it stays due: the next chunk tries again
            logger.warning("watch %s skipped on %s: %s", watch.spec.id, stream_id, exc)
        finally:
            self.book.release()

    async def _run(self, watch: WatchState, stream_id: str, media_end: float) -> WatchFired | None:
        retained = await self.memory.read([stream_id], since=media_end - self.window_s)
        if stream_id not in retained or len(retained[stream_id]) == 0:
            return None
        tokens = retained[stream_id].tokens
        result: EngineAnswer = await self.worker.run_question(
            lambda e: e.answer(watch.spec.question, [(stream_id, tokens)], None)
        )
        if not watch.observe(stream_id, result.text, time.monotonic()):
            return None
        return WatchFired(watch.spec, stream_id, result.text, spans(result), datetime.now(UTC))
