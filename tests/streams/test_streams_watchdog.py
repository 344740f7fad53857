"""The watchdog flags silence."""

from __future__ import annotations

from streams.watchdog import StallWatchdog


def test_watchdog_flags_silence_from_session_start_and_from_last_frame() -> None:
    watchdog = StallWatchdog(5.0)
    watchdog.reset(100.0)
    assert not watchdog.stalled(104.9)
    assert watchdog.stalled(105.0)
    watchdog.feed(105.0)
    assert not watchdog.stalled(109.0)
    assert watchdog.silent_for(109.0) == 4.0
