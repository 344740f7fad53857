"""`flexselect-agent bench needle` runs end to end on a CI-sized setting and reports every method."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from agent.selector import TOY_SELECTOR_DIR
from cli.main import main
from flexselect.types import Prompt, VisualTokens
from lab.needle.benchmark import RandomScorer

KEYS = {
    "method",
    "selection",
    "frames",
    "budget",
    "budget_used",
    "accuracy",
    "evidence_first",
    "n",
    "seconds",
}


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["bench", "needle", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, object]:
    out_dir = tmp_path_factory.mktemp("bench")
    buffer = io.StringIO()  # capsys is function-scoped; this runs once for the module
    with contextlib.redirect_stdout(buffer):
        code = main(["bench", "needle", "--frames", "16,64", "--n", "8", "--json", "--out", str(out_dir)])
    return code, json.loads(buffer.getvalue()), out_dir


@pytest.mark.slow
def test_json_holds_every_method_at_every_length(small):
    code, report, _ = small
    assert code == 0
    scored = [(m, s) for m in ("random", "reference", "lite") for s in ("paper", "stream")]
    methods = [("all", None), ("uniform", None), *scored]
    assert [(r["method"], r["selection"], r["frames"]) for r in report["results"]] == [
        (m, s, f) for f in (16, 64) for m, s in methods
    ]
    assert all(set(r) == KEYS and r["n"] == 8 and 0.0 <= r["accuracy"] <= 1.0 for r in report["results"])


@pytest.mark.slow
def test_scored_methods_say_how_often_their_first_evidence_is_on_the_needle(small):
    _, report, _ = small
    for r in report["results"]:
        if r["selection"] is None:  # nothing scored, nothing ranked
            assert r["evidence_first"] is None and r["budget_used"] == []
        else:
            assert 0.0 <= r["evidence_first"] <= 1.0
            assert r["budget_used"] == [32]  # 8 whole temporal steps of 4 tokens: rounding keeps it


@pytest.mark.slow
def test_the_default_budget_is_sixteen_frames_of_tokens(small):
    _, report, _ = small
    assert {r["budget"] for r in report["results"]} == {32}  # 56 px: 2 x 2 tokens per 2-frame patch


@pytest.mark.slow
def test_a_table_file_and_a_plot_are_written(small):
    _, report, out_dir = small
    saved = json.loads((out_dir / "needle.json").read_text())
    assert [{k: r[k] for k in KEYS} for r in saved["results"]] == report["results"]
    assert saved["omitted"] == {}
    assert saved["selector"] == str(TOY_SELECTOR_DIR)  # the toy's shipped FlexSelect-Lite selector
    assert (out_dir / "needle.png").stat().st_size > 0


def test_lite_with_a_directory_that_holds_no_selector_is_a_usage_error(capsys, tmp_path):
    code, _, err = bench(capsys, "--methods", "lite", "--selector", str(tmp_path), "--out", str(tmp_path))
    assert code == 2
    assert f"method 'lite' is not available: no selector at {tmp_path} (selector.json missing)" in err


def test_a_model_without_a_selector_runs_every_other_method_and_says_why(capsys, tmp_path):
    from flexselect.tiny import save_tiny

    model = save_tiny("qwen2_5_vl", tmp_path / "model", frame_side=56)
    argv = ["--model", str(model), "--frames", "16", "--n", "2", "--kinds", "color", "--out", str(tmp_path)]
    code, _, _ = bench(capsys, *argv, "--methods", "all,reference")
    saved = json.loads((tmp_path / "needle.json").read_text())
    assert code == 0
    assert [(r["method"], r["selection"]) for r in saved["results"]] == [
        ("all", None),
        ("reference", "paper"),
        ("reference", "stream"),
    ]
    why = "no --selector given (a FlexSelect-Lite selector trained for this model)"
    assert saved["omitted"] == {"lite": why}


def test_an_unknown_method_is_a_usage_error(capsys, tmp_path):
    code, _, err = bench(capsys, "--methods", "all,oracle", "--out", str(tmp_path))
    assert code == 2
    assert "unknown method 'oracle'" in err


def test_random_scores_are_seeded():
    n = 5
    prompt = Prompt(prefix_ids=torch.zeros(0, dtype=torch.long), suffix_ids=torch.zeros(0, dtype=torch.long))
    tokens = VisualTokens(
        embeds=torch.zeros(n, 2),
        frame=torch.zeros(n, dtype=torch.long),
        time=torch.zeros(n, dtype=torch.float64),
        grid=torch.zeros(n, 3, dtype=torch.long),
        kind=torch.zeros(n, dtype=torch.int8),
        token_id=torch.zeros(n, dtype=torch.long),
    )
    first, second = RandomScorer(3), RandomScorer(3)
    assert torch.equal(first.score(prompt, tokens), second.score(prompt, tokens))
