"""`flexselect-agent answer`: a saved checkpoint answers about a file; bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from cli.main import main
from flexselect.tiny import FAMILIES, save_tiny


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(40):  # 10 s
            frame = av.VideoFrame.from_ndarray(
                (rng.random((64, 64, 3)) * 255).astype(np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("qwen2_5_vl", tmp_path_factory.mktemp("ckpt") / "qwen2_5_vl")


def answer(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["answer", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("family", FAMILIES)
def test_a_saved_checkpoint_answers_with_json(family, tmp_path, video, capsys):
    directory = save_tiny(family, tmp_path / family, frame_side=64 if family == "qwen3_vl" else 56)
    code, out, _ = answer(
        capsys,
        "--model",
        str(directory),
        "--video",
        str(video),
        "--question",
        "what color?",
        "--frames",
        "16",
        "--budget",
        "10",
        "--layer",
        "2",
        "--max-new-tokens",
        "3",
        "--json",
    )
    result = json.loads(out)
    assert code == 0
    assert result["kept_tokens"] == result["budget"]["used"] >= 10  # the paper's: up to whole frames
    assert (result["budget"]["requested"], result["budget"]["grouping"]) == (10, "interleaved")
    assert result["total_tokens"] > 10
    # rank: the evidence ranked by the reference layer in the answer's prefill (issue 20), every scored answer
    assert set(result["timings_ms"]) == {"decode", "encode", "select", "prefill", "generate", "rank"}
    assert all(0.0 <= span["start"] <= span["end"] <= 10.0 for span in result["evidence"])
    evidence = sum(span["tokens"] for span in result["evidence"])
    assert 1 <= evidence <= result["kept_tokens"]  # kept tokens scoring near the best
    assert isinstance(result["answer"], str)


def test_a_lite_selector_selects_the_budget_and_reports_its_evidence(checkpoint, video, tmp_path, capsys):
    from flexselect.adapters import load_adapter
    from tests.selector.selector_helpers import tiny_selector

    tiny_selector(load_adapter(checkpoint, dtype="float32")).save(tmp_path / "selector")
    argv = ["--model", str(checkpoint), "--video", str(video), "--question", "what color?", "--frames", "16"]
    code, out, _ = answer(
        capsys, *argv, "--budget", "10", "--scorer", "lite", "--selector", str(tmp_path / "selector"),
        "--max-new-tokens", "2", "--json",
    )  # fmt: skip
    result = json.loads(out)
    assert code == 0
    assert (result["kept_tokens"], result["total_tokens"]) == (12, 8 * 4)  # 10 up to 3 steps of 4 tokens
    assert 1 <= sum(span["tokens"] for span in result["evidence"]) <= 12
    assert "select" in result["timings_ms"]


def test_the_stream_selection_keeps_the_exact_budget_and_says_so(checkpoint, video, capsys):
    argv = ["--model", str(checkpoint), "--video", str(video), "--question", "what color?", "--frames", "16"]
    code, out, _ = answer(
        capsys, *argv, "--budget", "10", "--selection", "stream", "--max-new-tokens", "1", "--json"
    )
    result = json.loads(out)
    assert code == 0
    assert result["kept_tokens"] == 10
    assert result["budget"] == {
        "requested": 10,
        "used": 10,
        "per_group": None,
        "groups": 1,
        "grouping": "contiguous",
        "mode": "global",
        "rounding": "exact",
    }
    scores = [span["score"] for span in result["evidence"]]
    assert scores == sorted(scores, reverse=True)  # best first


def test_fps_sampling_takes_frames_per_second_of_video(checkpoint, video, capsys):
    code, out, _ = answer(
        capsys,
        "--model",
        str(checkpoint),
        "--video",
        str(video),
        "--question",
        "what?",
        "--fps",
        "0.8",
        "--scorer",
        "none",
        "--max-new-tokens",
        "1",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["total_tokens"] == 4 * 4  # 8 frames -> 4 temporal steps of 2x2 tokens


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--video", "missing.mp4"], "video file not found: missing.mp4"),
        (["--budget", "0"], "--budget must be at least 1 token, got 0"),
        (["--model", "no/such-model"], "cannot load model 'no/such-model'"),
        (["--selector", "sel"], "--selector is only used with --scorer lite"),
        (["--scorer", "lite"], "--scorer lite needs --selector DIR"),
        (["--scorer", "lite", "--selector", "no/such-dir"], "cannot use selector 'no/such-dir'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, checkpoint, video, capsys):
    base = {"--model": str(checkpoint), "--video": str(video), "--question": "what?"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, out, err = answer(capsys, *[item for pair in base.items() for item in pair])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_an_unreadable_video_is_one_line_and_exit_code_2(checkpoint, tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    code, _, err = answer(capsys, "--model", str(checkpoint), "--video", str(bad), "--question", "what?")
    assert code == 2
    assert err.startswith("flexselect-agent answer: error: cannot read video")
    assert err.count("\n") == 1
