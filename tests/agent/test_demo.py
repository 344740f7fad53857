"""`flexselect-agent demo`, the README's main job, answers its recording's questions (the toy model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from agent.models import TOY_MODEL_DIR
from agent.selector import TOY_SELECTOR_DIR
from cli.commands.demo import choose_scorer
from cli.main import main
from flexselect.adapters import load_adapter
from flexselect.lite import LiteSelector
from lab.selector.recipe import decoder_for


def near(span: list[float], truth: list[float], slack: float = 2.0) -> bool:
    """Whether an evidence span lies within `slack` seconds of the needle's own span."""
    return span[0] <= truth[1] + slack and span[1] >= truth[0] - slack


def demo(*args: str) -> dict:
    """Run `flexselect-agent demo --json ARGS` and return its report."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--json", *args], capture_output=True, text=True, timeout=900,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def report() -> dict:
    return demo("--seconds", "60", "--needles", "3", "--seed", "7")


@pytest.mark.slow
def test_the_demo_asks_every_question_of_the_shipped_kinds(report):
    assert report["asked"] >= 6
    assert len(report["answers"]) == report["asked"]


@pytest.mark.slow
def test_the_demo_selects_with_the_shipped_toy_selector(report):
    assert report["scorer"] == "lite"


@pytest.mark.slow
def test_most_answers_equal_the_ground_truth(report):
    assert report["correct"] / report["asked"] >= 0.8


@pytest.mark.slow
def test_the_evidence_of_every_right_answer_reaches_within_two_seconds_of_its_needle(report):
    right = [row for row in report["answers"] if row["correct"]]
    assert right
    assert all(any(near(span, row["evidence_truth_s"]) for span in row["evidence_s"]) for row in right)


@pytest.mark.slow
def test_the_first_evidence_span_is_counted_like_the_answer(report):
    # How often it lands on the needle is issue 20's open target for FlexSelect-Lite (3/9 on the cached
    # path when last run); this test holds the counting, not that share.
    assert report["evidence_correct"] == sum(row["evidence_correct"] for row in report["answers"])
    for row in report["answers"]:
        (start, end), (a, b) = (row["evidence_s"] or [(float("inf"), 0.0)])[0], row["evidence_truth_s"]
        assert row["evidence_correct"] == (start < b and end + 1.0 > a)  # its last 2-frame step: 1 s


@pytest.mark.slow
def test_the_evidence_leaves_out_part_of_the_recording(report):
    """At the default budget (32 temporal steps' worth) FlexSelect keeps about half of a minute."""
    covered = [sum(end - start for start, end in row["evidence_s"]) for row in report["answers"]]
    assert all(0 < seconds < 55 for seconds in covered)


@pytest.mark.slow
def test_the_demo_answers_with_a_selector_directory_given(tmp_path):
    """A randomly initialised selector for the toy model: the loop runs, whatever its accuracy."""
    torch.manual_seed(0)
    toy = load_adapter(TOY_MODEL_DIR, dtype="float32")
    selector = LiteSelector.for_adapter(toy, decoder_for("tiny", toy)).save(tmp_path / "selector")
    got = demo("--seconds", "12", "--needles", "1", "--scorer", "lite", "--selector", str(selector))
    assert got["scorer"] == "lite" and got["asked"] >= 1
    assert all(not str(row["answer"]).startswith("error:") for row in got["answers"])


def test_the_default_scorer_is_lite_for_the_toy_model_which_ships_a_selector():
    assert (TOY_SELECTOR_DIR / "selector.json").is_file()
    assert choose_scorer("toy", None, None) == {"scorer": "lite", "selector": None}
    assert choose_scorer("/models/qwen", None, None) == {"scorer": "reference", "selector": None}


def test_a_selector_directory_given_selects_with_it(tmp_path):
    assert choose_scorer("/models/qwen", None, str(tmp_path)) == {"scorer": "lite", "selector": str(tmp_path)}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--scorer", "lite", "--selector", "/no/such/selector"],
            "--scorer lite: the selector directory /no/such/selector does not exist",
        ),
        (
            ["--scorer", "reference", "--selector", "/no/such/selector"],
            "--selector is only used with --scorer lite",
        ),
        (
            ["--model", "/models/qwen", "--scorer", "lite"],
            "--scorer lite with --model /models/qwen needs --selector DIR: a selector trained for it",
        ),
    ],
    ids=["missing-directory", "selector-without-lite", "lite-without-selector"],
)
def test_a_lite_demo_without_a_usable_selector_fails_with_one_clear_line(flags, message, capsys):
    assert main(["demo", *flags]) == 2
    assert capsys.readouterr().err == f"flexselect-agent demo: error: {message}\n"
