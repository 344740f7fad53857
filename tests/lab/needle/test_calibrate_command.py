"""`flexselect-agent calibrate-layer` sweeps every layer of any supported model and records the choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.models import resolve_model
from cli.main import main
from flexselect.tiny import save_tiny
from lab.needle.videos import WorldVideos, write_cases


def calibrate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["calibrate-layer", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "qwen2_5_vl")


def test_a_tiny_random_model_gets_one_row_per_layer(tiny_qwen, tmp_path, capsys):
    code, out, _ = calibrate(
        capsys, "--model", str(tiny_qwen), "--count", "3", "--frames", "8", "--out", str(tmp_path)
    )
    rows = [line.split() for line in out.splitlines()[1:5]]
    assert code == 0
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows)
    assert (tmp_path / "calibration.png").stat().st_size > 0


def test_json_reports_recall_top1_and_mass_per_layer(tiny_qwen, tmp_path, capsys):
    code, out, _ = calibrate(
        capsys, "--model", str(tiny_qwen), "--count", "2", "--frames", "8", "--out", str(tmp_path), "--json"
    )
    report = json.loads(out)
    assert code == 0
    assert report["layers"] == 4
    assert [len(report[key]) for key in ("recall", "top1", "mass")] == [4, 4, 4]
    assert report["k"] == 4  # one temporal patch of a 56 px frame: 2 x 2 tokens
    assert report["samples"] == 2
    assert json.loads((tmp_path / "calibration.json").read_text()) == report


def test_set_default_writes_the_chosen_layer_into_the_checkpoint(tiny_qwen, tmp_path, capsys):
    model = shutil.copytree(tiny_qwen, tmp_path / "model")
    argv = ["--model", str(model), "--count", "2", "--frames", "8", "--out", str(tmp_path), "--set-default"]
    code, out, _ = calibrate(capsys, *argv, "--json")
    report = json.loads(out)
    config = json.loads((model / "config.json").read_text())
    card = json.loads((model / "flexselect.json").read_text())
    assert code == 0
    assert config["flexselect_reference_layer"] == card["reference_layer"] == report["chosen"]
    assert config["flexselect_aggregation"] == card["aggregation"] == report["aggregation"]


def test_both_aggregations_are_swept_and_the_report_names_the_one_chosen(tiny_qwen, tmp_path, capsys):
    argv = ["--model", str(tiny_qwen), "--count", "2", "--frames", "8", "--out", str(tmp_path), "--json"]
    code, out, _ = calibrate(capsys, *argv)
    report = json.loads(out)
    assert code == 0
    assert sorted(report["by_aggregation"]) == ["max", "mean"]
    chosen = report["by_aggregation"][report["aggregation"]]
    assert chosen["recall_needle"] == report["recall_needle"] and chosen["chosen"] == report["chosen"]


def test_one_aggregation_can_be_forced(tiny_qwen, tmp_path, capsys):
    argv = ["--model", str(tiny_qwen), "--count", "2", "--frames", "8", "--out", str(tmp_path), "--json"]
    code, out, _ = calibrate(capsys, *argv, "--aggregation", "mean")
    report = json.loads(out)
    assert code == 0
    assert report["aggregation"] == "mean" and list(report["by_aggregation"]) == ["mean"]


def test_user_videos_with_world_ground_truth_are_accepted(tiny_qwen, tmp_path, capsys):
    cases = write_cases(tmp_path / "videos", WorldVideos(frames=8), count=2, seed=3, kinds=("color",))
    videos = sorted({str(c.video) for c in cases})
    code, out, _ = calibrate(
        capsys,
        "--model",
        str(tiny_qwen),
        "--videos",
        *videos,
        "--frames",
        "8",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert code == 0
    assert json.loads(out)["samples"] >= 2


def test_a_video_without_ground_truth_is_a_usage_error(tiny_qwen, tmp_path, capsys):
    video = tmp_path / "x.mp4"
    video.write_bytes(b"")
    code, _, err = calibrate(
        capsys, "--model", str(tiny_qwen), "--videos", str(video), "--out", str(tmp_path)
    )
    assert code == 2
    assert "has no ground truth" in err


@pytest.mark.slow
def test_the_toy_peaks_at_its_default_layer(tmp_path, capsys):
    code, out, _ = calibrate(capsys, "--model", "toy", "--count", "16", "--out", str(tmp_path), "--json")
    report = json.loads(out)
    config = json.loads((Path(resolve_model("toy")) / "config.json").read_text())
    assert code == 0
    assert report["chosen"] == config["flexselect_reference_layer"]
    assert report["aggregation"] == config["flexselect_aggregation"]
