"""Back-off doubles up to its cap with bounded jitter; the watchdog flags silence."""

from __future__ import annotations

import random

import pytest

from streams.watchdog import Backoff, StallWatchdog


def test_backoff_doubles_from_base_up_to_cap_without_jitter() -> None:
    backoff = Backoff(1.0, 10.0, 0.0)
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.failures == 6


def test_backoff_jitter_stays_within_its_fraction_and_under_the_cap() -> None:
    backoff = Backoff(1.0, 30.0, 0.2, rng=random.Random(0))
    delays = [backoff.next_delay() for _ in range(200)]
    assert 0.8 <= delays[0] <= 1.2
    assert 1.6 <= delays[1] <= 2.4
    assert max(delays) <= 30.0
    assert len({round(d, 6) for d in delays[10:]}) > 1  # the cap is jittered too, so clients spread out


def test_backoff_reset_starts_again_from_base() -> None:
    backoff = Backoff(0.5, 8.0, 0.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_survives_thousands_of_failures() -> None:
    backoff = Backoff(1.0, 30.0, 0.0)
    assert [backoff.next_delay() for _ in range(5000)][-1] == 30.0


def test_backoff_rejects_cap_below_base() -> None:
    with pytest.raises(ValueError, match=r"base_s=2\.0, cap_s=1\.0"):
        Backoff(2.0, 1.0, 0.0)


def test_watchdog_flags_silence_from_session_start_and_from_last_frame() -> None:
    watchdog = StallWatchdog(5.0)
    watchdog.reset(100.0)
    assert not watchdog.stalled(104.9)
    assert watchdog.stalled(105.0)
    watchdog.feed(105.0)
    assert not watchdog.stalled(109.0)
    assert watchdog.silent_for(109.0) == 4.0
