"""Job scheduling: questions go first, ingest never starves, both queues are bounded."""

from __future__ import annotations

import pytest

from agent.scheduler import JobScheduler, QueueFull


def scheduler(**kwargs: int) -> JobScheduler[str, str]:
    sizes = {"question_slots": 4, "chunk_slots": 8, "max_batch_chunks": 2, "max_consecutive": 2, **kwargs}
    return JobScheduler(**sizes)


def drain(s: JobScheduler[str, str]) -> list[str]:
    order = []
    while (batch := s.next()) is not None:
        order.append(batch.question if batch.question is not None else "+".join(batch.chunks or []))
    return order


def test_a_waiting_question_runs_before_waiting_chunks():
    s = scheduler()
    for c in ("c1", "c2", "c3"):
        s.put_chunk(c)
    s.put_question("q1")
    assert drain(s) == ["q1", "c1+c2", "c3"]


def test_ingest_gets_a_batch_after_max_consecutive_questions():
    s = scheduler(max_consecutive=2)
    for q in ("q1", "q2", "q3", "q4"):
        s.put_question(q)
    s.put_chunk("c1")
    assert drain(s) == ["q1", "q2", "c1", "q3", "q4"]


def test_chunks_are_batched_up_to_the_batch_size_oldest_first():
    s = scheduler(max_batch_chunks=3)
    for c in ("c1", "c2", "c3", "c4"):
        s.put_chunk(c)
    assert drain(s) == ["c1+c2+c3", "c4"]


def test_a_full_question_queue_refuses():
    s = scheduler(question_slots=2)
    s.put_question("q1")
    s.put_question("q2")
    with pytest.raises(QueueFull, match="2 questions are already waiting"):
        s.put_question("q3")


def test_a_full_chunk_queue_has_no_room():
    s = scheduler(chunk_slots=1)
    s.put_chunk("c1")
    assert not s.chunk_room()
    with pytest.raises(QueueFull):
        s.put_chunk("c2")


def test_empty_queues_have_no_job():
    assert scheduler().next() is None
