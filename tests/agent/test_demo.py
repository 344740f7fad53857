"""`flexselect-agent demo`, the README's main job, answers its recording's questions (the toy model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def near(span: list[float], truth: list[float], slack: float = 2.0) -> bool:
    """Whether an evidence span lies within `slack` seconds of the needle's own span."""
    return span[0] <= truth[1] + slack and span[1] >= truth[0] - slack


@pytest.fixture(scope="module")
def report() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--json", "--seconds", "60", "--needles", "3", "--seed", "7"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_demo_asks_every_question_of_the_shipped_kinds(report):
    assert report["asked"] >= 6
    assert len(report["answers"]) == report["asked"]


def test_most_answers_equal_the_ground_truth(report):
    assert report["correct"] / report["asked"] >= 0.8


def test_the_evidence_of_every_right_answer_reaches_within_two_seconds_of_its_needle(report):
    right = [row for row in report["answers"] if row["correct"]]
    assert right
    assert all(any(near(span, row["evidence_truth_s"]) for span in row["evidence_s"]) for row in right)


def test_the_evidence_leaves_out_part_of_the_recording(report):
    """At the default budget (32 temporal steps' worth) FlexSelect keeps about half of a minute."""
    covered = [sum(end - start for start, end in row["evidence_s"]) for row in report["answers"]]
    assert all(0 < seconds < 55 for seconds in covered)
