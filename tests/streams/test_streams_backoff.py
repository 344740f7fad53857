"""The back-off: delays grow by a factor up to a cap, with bounded jitter."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from common.backoff import Backoff, BackoffConfig
from streams.config import StreamConfig


def test_backoff_doubles_from_base_up_to_cap_without_jitter() -> None:
    backoff = Backoff(BackoffConfig(initial_s=1.0, max_s=10.0, jitter=0.0))
    assert [backoff.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.failures == 6


def test_backoff_jitter_stays_within_its_fraction_and_under_the_cap() -> None:
    backoff = Backoff(BackoffConfig(initial_s=1.0, max_s=30.0, jitter=0.2), rng=random.Random(0))
    delays = [backoff.next_delay() for _ in range(200)]
    assert 0.8 <= delays[0] <= 1.2
    assert 1.6 <= delays[1] <= 2.4
    assert max(delays) <= 30.0
    assert len({round(d, 6) for d in delays[10:]}) > 1  # the cap is jittered too, so clients spread out


def test_backoff_reset_starts_again_from_base() -> None:
    backoff = Backoff(BackoffConfig(initial_s=0.5, max_s=8.0, jitter=0.0))
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_survives_thousands_of_failures() -> None:
    backoff = Backoff(BackoffConfig(initial_s=1.0, max_s=30.0, jitter=0.0))
    assert [backoff.next_delay() for _ in range(5000)][-1] == 30.0


def test_backoff_rejects_cap_below_base() -> None:
    with pytest.raises(ValidationError, match=r"backoff max_s \(1\.0\) must be >= initial_s \(2\.0\)"):
        BackoffConfig(initial_s=2.0, max_s=1.0)


def test_backoff_grows_by_its_factor() -> None:
    backoff = Backoff(BackoffConfig(initial_s=1.0, max_s=100.0, factor=3.0, jitter=0.0))
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 3.0, 9.0, 27.0, 81.0]


def test_old_and_new_back_off_keys_together_are_refused() -> None:
    message = "backoff_cap_s and backoff both set the back-off; keep backoff only"
    with pytest.raises(ValidationError, match=message):
        StreamConfig(backoff_cap_s=5.0, backoff={"max_s": 5.0})
