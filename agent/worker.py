"""The sole owner of the model: runs the scheduler's jobs one at a time on a dedicated thread."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.admission import LoadShedder
from agent.engine import ChunkInput, EncodedChunk, Engine, PreparedChunk
from agent.scheduler import JobScheduler, QueueFull

logger = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["ModelWorker", "QueueFull", "WorkerStats"]


@dataclass
class _Job:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    queued_at: float = field(default_factory=time.monotonic)
    chunk: PreparedChunk | None = None  # ingest jobs: encoded together with the rest of their batch


@dataclass
class WorkerStats:
    """Counters for metrics: jobs run and time spent per kind."""

    questions: int = 0
    chunks: int = 0
    batches: int = 0  # ingest batches: one vision forward and one scoring pass each
    largest_batch: int = 0
    failures: int = 0
    busy_s: float = 0.0
    last_wait_s: dict[str, float] = field(default_factory=dict)


class ModelWorker:
    """Runs ingest batches and questions on one thread, in the order `JobScheduler` decides."""

    def __init__(
        self,
        engine: Engine,
        *,
        question_slots: int,
        chunk_slots: int,
        max_batch_chunks: int,
        max_consecutive: int,
        shedder: LoadShedder | None = None,
    ) -> None:
        self.engine = engine
        self.shedder = shedder or LoadShedder()
        self.scheduler: JobScheduler[_Job, _Job] = JobScheduler(
            question_slots=question_slots,
            chunk_slots=chunk_slots,
            max_batch_chunks=max_batch_chunks,
            max_consecutive=max_consecutive,
        )
        self.stats = WorkerStats()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._wake = asyncio.Event()
        self._room = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> ModelWorker:
        self._task = asyncio.create_task(self._run(), name="model-worker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop taking jobs, fail the waiting ones, finish the running one and release the thread."""
        self._closing = True
        for job in [*self.scheduler.questions, *self.scheduler.chunks]:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the model worker is shutting down"))
        self.scheduler.questions.clear()
        self.scheduler.chunks.clear()
        self._wake.set()
        if self._task is not None:
            await self._task
        self._thread.shutdown(wait=True)

    @property
    def queued_questions(self) -> int:
        return len(self.scheduler.questions)

    @property
    def queued_chunks(self) -> int:
        return len(self.scheduler.chunks)

    @property
    def shed_factor(self) -> int:
        """1 while ingest keeps up; 2, 4, ... while streams sample fewer frames (`agent.admission`)."""
        return self.shedder.factor

    async def encode(self, chunk: ChunkInput) -> EncodedChunk:
        """Encode one chunk together with whatever other streams' chunks are waiting; waits while the
        ingest queue is full (backpressure to the stream). Resizing runs here, off the model thread."""
        prepared = await asyncio.to_thread(self.engine.prepare, chunk)
        asked = time.monotonic()  # the lag counts the wait for room, where an overload shows first
        async with self._room:
            await self._room.wait_for(lambda: self._closing or self.scheduler.chunk_room())
        job = self._job(lambda: self.engine.encode_batch([prepared])[0])
        job.chunk, job.queued_at = prepared, asked
        self.scheduler.put_chunk(job)
        self._wake.set()
        return await job.future

    async def run_question(self, fn: Callable[[Engine], T]) -> T:
        """Run `fn(engine)` as a question job; raises QueueFull when the question queue is full."""
        job = self._job(lambda: fn(self.engine))
        self.scheduler.put_question(job)
        self._wake.set()
        return await job.future

    def _job(self, fn: Callable[[], Any]) -> _Job:
        if self._closing:
            raise RuntimeError("the model worker is shutting down")
        return _Job(fn=fn, future=asyncio.get_running_loop().create_future())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            batch = self.scheduler.next()
            if batch is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            jobs = [batch.question] if batch.question is not None else list(batch.chunks or [])
            kind = "question" if batch.question is not None else "ingest"
            async with self._room:
                self._room.notify_all()
            now = time.monotonic()
            self.stats.last_wait_s[kind] = max(now - j.queued_at for j in jobs)
            if kind == "question":
                await self._execute(loop, jobs[0])
                self.stats.questions += 1
            else:
                self.shedder.observe(self.stats.last_wait_s[kind], now)
                await self._execute_batch(loop, jobs)
                self.stats.batches += 1
                self.stats.chunks += len(jobs)
                self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
            self.stats.busy_s += time.monotonic() - now
        async with self._room:
            self._room.notify_all()

    async def _execute_batch(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        """One `Engine.encode_batch` over the batch's chunks, results handed to each waiter. If the batch
        fails, its chunks run one at a time so only the bad chunk's stream sees the error."""
        live = [j for j in jobs if not j.future.done()]  # skip those cancelled by their waiter
        if not live:
            return
        prepared = [j.chunk for j in live]
        assert all(p is not None for p in prepared)
        try:
            results = await loop.run_in_executor(self._thread, self.engine.encode_batch, prepared)
        except Exception:
            if len(live) == 1:
                await self._execute(loop, live[0])
                return
            logger.warning("an ingest batch of %d chunks failed; encoding them one at a time", len(live))
            for job in live:
                await self._execute(loop, job)
            return
        for job, result in zip(live, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    async def _execute(self, loop: asyncio.AbstractEventLoop, job: _Job) -> None:
        if job.future.done():  # cancelled by its waiter
            return
        try:
            result = await loop.run_in_executor(self._thread, job.fn)
        except Exception as exc:  # a job's failure belongs to its caller, never to the worker
            self.stats.failures += 1
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(result)
