"""Watches: minimum interval between evaluations, events on expected or changed answers, cooldown."""

from __future__ import annotations

import pytest

from agent.mqtt import ErrorCode, RequestError, WatchSpec
from agent.watches import WatchBook, WatchLimits, WatchState


def watch(**kwargs) -> WatchState:
    spec = {"id": "w", "question": "what color was the square ?", "min_interval_s": 5, "cooldown_s": 60}
    return WatchState(WatchSpec(**{**spec, **kwargs}))


def test_a_watch_is_due_again_only_after_its_minimum_interval():
    w = watch()
    assert w.due("cam", 100.0)
    w.observe("cam", "red", 100.0)
    assert not w.due("cam", 104.9)
    assert w.due("cam", 105.0)


def test_an_expected_answer_fires_case_and_space_insensitively():
    w = watch(expect="Red")
    assert not w.observe("cam", "blue", 0.0)
    assert w.observe("cam", " red ", 10.0)


def test_no_second_event_within_the_cooldown():
    w = watch(expect="red")
    assert w.observe("cam", "red", 0.0)
    assert not w.observe("cam", "red", 59.0)
    assert w.observe("cam", "red", 60.0)


def test_without_an_expectation_every_evaluation_fires_outside_the_cooldown():
    w = watch(cooldown_s=15)
    assert w.observe("cam", "red", 0.0)
    assert not w.observe("cam", "red", 10.0)
    assert w.observe("cam", "blue", 20.0)


def test_streams_are_tracked_separately():
    w = watch(expect="red")
    assert w.observe("cam1", "red", 0.0)
    assert w.observe("cam2", "red", 1.0)


def test_the_book_adds_removes_and_selects_watches_for_a_stream():
    book = WatchBook([WatchSpec(id="a", question="any red ?", streams=["cam1"])])
    book.add(WatchSpec(id="b", question="any blue ?"))
    assert [w.spec.id for w in book.due("cam2", 0.0)] == ["b"]
    assert sorted(w.spec.id for w in book.due("cam1", 0.0)) == ["a", "b"]
    assert book.remove("a")
    assert not book.remove("a")
    assert book.questions() == ["any blue ?"]


def test_the_book_runs_at_most_max_running_watches_least_recently_evaluated_first():
    specs = [WatchSpec(id=f"w{i}", question=f"is it {i}?", min_interval_s=5) for i in range(3)]
    book = WatchBook(specs, WatchLimits(max_running=2, min_interval_s=5))
    first = book.claim("cam", 100.0)
    assert [w.spec.id for w in first] == ["w0", "w1"]
    assert book.claim("cam", 100.0) == []  # both slots are busy
    book.release()
    book.release()
    assert [w.spec.id for w in book.claim("cam", 101.0)] == ["w2"]  # never run beats run before
    book.release()
    assert [w.spec.id for w in book.claim("cam", 106.0)] == ["w0", "w1"]


def test_the_book_refuses_a_watch_over_the_cap_or_below_the_interval_floor():
    book = WatchBook([], WatchLimits(max_watches=1, min_interval_s=2))
    book.add(WatchSpec(id="a", question="door open?", min_interval_s=2))
    with pytest.raises(RequestError) as too_many:
        book.add(WatchSpec(id="b", question="door open?", min_interval_s=2))
    with pytest.raises(RequestError) as too_fast:
        book.add(WatchSpec(id="a", question="door open?", min_interval_s=0.5))
    book.add(WatchSpec(id="a", question="window open?", min_interval_s=3))  # replacing stays allowed
    assert too_many.value.code is ErrorCode.TOO_MANY_WATCHES
    assert too_fast.value.code is ErrorCode.INVALID_REQUEST
    assert too_fast.value.message == "field 'min_interval_s': 0.5 s is below this agent's floor, 2 s"
    assert [s.question for s in book.specs()] == ["window open?"]
