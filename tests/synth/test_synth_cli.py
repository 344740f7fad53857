"""`flexselect-agent synth video`: writes mp4 + JSON; bad input is a one-line error with exit code 2."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from streams.synth import WorldConfig, generate_world, ground_truth


def test_synth_video_writes_the_mp4_and_its_ground_truth(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    argv = [
        "synth",
        "video",
        "--seconds",
        "3",
        "--fps",
        "4",
        "--needles",
        "2",
        "--seed",
        "7",
        "--size",
        "112x56",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    config = WorldConfig(seconds=3, fps=4, width=112, height=56, needles=2, seed=7)
    expected = ground_truth(generate_world(config))
    assert json.loads(out.with_suffix(".json").read_text()) == json.loads(expected.to_json())
    assert capsys.readouterr().out.startswith(f"wrote {out} (12 frames, 112x56 at 4 fps, 2 needles)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seconds", "0"], "--seconds must be positive"),
        (["--seconds", "-3"], "--seconds must be positive"),
        (["--fps", "0"], "--fps must be positive"),
        (["--needles", "-1"], "--needles must be >= 0"),
        (["--size", "224"], "--size must look like 224x224"),
        (["--size", "100x100"], "not a multiple of the 28px cell"),
        (["--size", "29x30", "--cell", "0"], "--size must be even"),
        (["--needles", "50"], "50 needles do not fit in 20 frames"),
        (["--min-needle-seconds", "2", "--max-needle-seconds", "1"], "--min-needle-seconds"),
        (["--crf", "60"], "--crf must be in 0..51"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_error(tmp_path, capsys, args, message):
    out = tmp_path / "bad.mp4"
    argv = ["synth", "video", "--seconds", "10", "--fps", "2", "--out", str(out), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("flexselect-agent synth: error: ") and message in err and err.count("\n") == 1
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_out_must_be_an_mp4(tmp_path, capsys):
    assert main(["synth", "video", "--seconds", "1", "--out", str(tmp_path / "x.avi")]) == 2
    assert "--out must end with .mp4" in capsys.readouterr().err
