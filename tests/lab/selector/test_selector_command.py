"""`flexselect-agent selector train|eval` on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from flexselect.lite import LiteSelector
from tests.selector.selector_helpers import tiny_selector

EVAL_KEYS = ["spearman", "recall_at_k", "k", "n", "ms_per_1k_tokens", "teacher_ms_per_1k_tokens"]


@pytest.fixture
def selector_dir(tmp_path: Path, qwen, qwen_dir: Path) -> Path:
    selector = tiny_selector(qwen)
    config = selector.config
    selector.config = type(config)(**{**config.__dict__, "base_model": str(qwen_dir), "teacher_layer": 2})
    return selector.save(tmp_path / "selector")


def test_eval_json_prints_the_documented_keys(selector_dir: Path, capsys):
    args = ["--n", "2", "--frames", "8", "--timing-groups", "1", "--json"]
    code = main(["selector", "eval", "--selector", str(selector_dir), *args])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == EVAL_KEYS
    assert result["k"] == 4 and result["n"] == 2  # K defaults to one temporal patch: 2x2 tokens
    assert -1 <= result["spearman"] <= 1 and 0 <= result["recall_at_k"] <= 1


def test_train_writes_a_selector_that_eval_reads(tmp_path: Path, qwen_dir: Path, capsys):
    out = tmp_path / "trained"
    args = ["--preset", "tiny", "--clips", "4", "--heldout", "2", "--epochs", "1", "--frames", "8"]
    args.append("--no-progress")
    code = main(["selector", "train", "--model", str(qwen_dir), "--out", str(out), *args])
    assert code == 0
    assert "selector written to" in capsys.readouterr().out
    loaded = LiteSelector.load(out)
    assert loaded.config.base_model == str(qwen_dir) and loaded.config.teacher_layer == 2
    assert (out / "recipe.json").is_file() and (out / "train_state.json").is_file()


def test_resuming_an_empty_directory_is_a_usage_error(tmp_path: Path, capsys):
    assert main(["selector", "train", "--out", str(tmp_path), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_eval_of_a_missing_selector_is_a_usage_error(tmp_path: Path, capsys):
    assert main(["selector", "eval", "--selector", str(tmp_path / "none")]) == 2
    assert "not a selector directory" in capsys.readouterr().err


def test_an_unknown_preset_is_a_usage_error(tmp_path: Path, capsys):
    assert main(["selector", "train", "--out", str(tmp_path), "--preset", "huge"]) == 2
    assert "unknown --preset" in capsys.readouterr().err


def test_the_model_card_reports_the_results(selector_dir: Path):
    from lab.selector.card import write_model_card
    from lab.selector.recipe import SelectorRecipe

    results = {"spearman": 0.81, "recall_at_k": 0.9, "k": 16, "n": 200, "frames": 64, "ms_per_1k_tokens": 1.0,
               "teacher_ms_per_1k_tokens": 2.0, "recall_by_k": {"4": 0.95, "16": 0.9}}  # fmt: skip
    recipe = SelectorRecipe().to_dict()
    card = write_model_card(selector_dir, recipe=recipe, history=[], results=results, wall_s=60)
    text = card.read_text()
    assert "Spearman correlation with the teacher: **0.810**" in text
    assert "K=4: 0.950, K=16: 0.900" in text
    assert json.loads((selector_dir / "eval.json").read_text())["k"] == 16
