"""Live frames get wall-clock times spaced as the camera sent them, never in the future."""

from __future__ import annotations

import threading
import time

from streams.clock import LiveClock, Pacer


class FakeWall:
    """A settable wall clock (a pure value, no server involved)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_stamps_follow_pts_spacing_when_frames_arrive_in_a_burst() -> None:
    wall = FakeWall(1000.0)
    clock = LiveClock(now=wall)
    clock.anchor(0.4, 1000.0)  # the newest buffered frame (pts 0.4) arrived now
    stamps = [clock.stamp(i / 10) for i in range(5)]  # all read at the same instant
    assert [round(s - 1000.0, 6) for s in stamps] == [-0.4, -0.3, -0.2, -0.1, 0.0]


def test_stamps_never_run_ahead_of_arrival() -> None:
    wall = FakeWall(50.0)
    clock = LiveClock(now=wall)
    assert clock.stamp(0.0) == 50.0  # first frame: arrival
    wall.t = 50.05  # the next frame arrives before its PTS says it should (jitter)
    assert clock.stamp(0.1) <= 50.05


def test_a_pts_jump_re_anchors_on_arrival() -> None:
    wall = FakeWall(10.0)
    clock = LiveClock(now=wall, resync_s=2.0)
    clock.stamp(100.0)
    wall.t = 10.1
    assert clock.stamp(5.0) == 10.1  # camera clock reset: stamp would be 95 s behind
    assert clock.resyncs == 1


def test_stamps_increase_across_sessions() -> None:
    wall = FakeWall(10.0)
    clock = LiveClock(now=wall)
    first = clock.stamp(3.0)
    clock.new_session()
    assert clock.stamp(0.0) > first


def test_missing_pts_is_one_frame_after_the_previous() -> None:
    wall = FakeWall(20.0)
    clock = LiveClock(now=wall)
    clock.stamp(1.0)
    wall.t = 20.5
    assert abs(clock.stamp(None, frame_duration=0.04) - 20.04) < 1e-3


def test_pacer_releases_media_time_no_faster_than_real_time() -> None:
    pacer = Pacer(threading.Event())
    started = time.monotonic()
    assert all(pacer.wait(t) for t in (0.0, 0.1, 0.2, 0.3))
    assert time.monotonic() - started >= 0.29


def test_pacer_wakes_up_when_stopped() -> None:
    stop = threading.Event()
    pacer = Pacer(stop)
    pacer.wait(0.0)
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    assert pacer.wait(30.0) is False
    assert time.monotonic() - started < 1.0
