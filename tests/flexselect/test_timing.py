"""The one device timer: a stopwatch that reads the clock after the device's queued work."""

from __future__ import annotations

import time

import torch

from flexselect.timing import stopwatch, synced_now


def test_stopwatch_measures_the_block_in_milliseconds() -> None:
    with stopwatch(torch.device("cpu")) as took:
        time.sleep(0.05)
    assert 50.0 <= took.ms < 1000.0


def test_stopwatch_sets_its_reading_only_when_the_block_ends() -> None:
    with stopwatch() as took:
        assert took.ms == 0.0
    assert took.ms > 0.0


def test_synced_now_reads_the_perf_counter() -> None:
    before = time.perf_counter()
    assert before <= synced_now(torch.device("cpu")) <= time.perf_counter()
