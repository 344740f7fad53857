"""The learning-rate schedule: linear warm-up to the peak, then cosine decay to the floor at the last step."""

from __future__ import annotations

import pytest

from flexselect.training.schedule import warmup_cosine, warmup_steps

LR = {"lr": 1e-3, "min_lr": 1e-5, "total": 100}


def test_the_warm_up_climbs_linearly_to_the_peak():
    assert [warmup_cosine(s, warmup=4, **LR) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])


def test_the_decay_starts_at_the_peak_passes_the_midpoint_and_ends_at_the_floor():
    assert warmup_cosine(10, warmup=10, **LR) == pytest.approx(1e-3)
    assert warmup_cosine(55, warmup=10, **LR) == pytest.approx((1e-3 + 1e-5) / 2)
    assert warmup_cosine(100, warmup=10, **LR) == pytest.approx(1e-5)


def test_the_rate_stays_at_the_floor_past_the_last_step():
    assert warmup_cosine(250, warmup=10, **LR) == pytest.approx(1e-5)


def test_without_warm_up_the_first_step_runs_at_the_peak():
    assert warmup_cosine(0, warmup=0, **LR) == pytest.approx(1e-3)


def test_a_warm_up_fraction_rounds_to_whole_steps_and_is_at_least_one():
    assert warmup_steps(0.03, 1000) == 30
    assert warmup_steps(0.03, 10) == 1
    assert warmup_steps(0.0, 10) == 1
