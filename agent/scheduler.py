"""Which model job runs next: questions first, but ingest never starves.

The model runs one job at a time. A job is either one question or one ingest batch: up to
`max_batch_chunks` waiting chunks of any streams, oldest first, which the worker encodes in ONE vision
forward and ONE ingest-scoring pass and then splits per stream. Rules:

1. A waiting question runs before ingest, so a question waits for at most the one batch in progress.
2. After `max_consecutive` questions in a row, one ingest batch runs if any chunk is waiting, so a flood
   of questions slows ingest down to one batch per `max_consecutive` questions but never stops it.
3. Both queues are bounded: a full question queue refuses (`queue_full`), a full ingest queue makes the
   producer wait (the stream's own bounded queue then drops its oldest chunk for live sources).

The policy is pure (no I/O, no model) so it is tested on its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

Q = TypeVar("Q")
C = TypeVar("C")


class QueueFull(Exception):
    """The bounded queue has no room; the caller refuses the request."""


@dataclass
class Batch(Generic[Q, C]):
    """The next job: one question, or one ingest batch of chunks (encoded together)."""

    question: Q | None = None
    chunks: list[C] | None = None


class JobScheduler(Generic[Q, C]):
    """Two bounded FIFO queues and the rule that picks the next job."""

    def __init__(self, *, question_slots: int, chunk_slots: int, max_batch_chunks: int, max_consecutive: int):
        if min(question_slots, chunk_slots, max_batch_chunks, max_consecutive) < 1:
            raise ValueError("scheduler sizes must all be at least 1")
        self.question_slots = question_slots
        self.chunk_slots = chunk_slots
        self.max_batch_chunks = max_batch_chunks
        self.max_consecutive = max_consecutive
        self.questions: deque[Q] = deque()
        self.chunks: deque[C] = deque()
        self._streak = 0

    def put_question(self, question: Q) -> None:
        """Queue a question or raise QueueFull."""
        if len(self.questions) >= self.question_slots:
            raise QueueFull(f"{len(self.questions)} questions are already waiting")
        self.questions.append(question)

    def chunk_room(self) -> bool:
        return len(self.chunks) < self.chunk_slots

    def put_chunk(self, chunk: C) -> None:
        """Queue a chunk or raise QueueFull (callers wait for room first)."""
        if not self.chunk_room():
            raise QueueFull(f"{len(self.chunks)} chunks are already waiting")
        self.chunks.append(chunk)

    def next(self) -> Batch[Q, C] | None:
        """The job to run now, or None when both queues are empty."""
        ingest_due = self.chunks and (not self.questions or self._streak >= self.max_consecutive)
        if ingest_due:
            self._streak = 0
            take = min(self.max_batch_chunks, len(self.chunks))
            return Batch(chunks=[self.chunks.popleft() for _ in range(take)])
        if self.questions:
            self._streak += 1
            return Batch(question=self.questions.popleft())
        return None
