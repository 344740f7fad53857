"""Each benchmark's prompt as the paper's eval builds it, and the subtitle lines shown with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lab.eval import longvideobench, lvbench, mlvu, videomme
from lab.eval.items import EvalItem
from tests.lab.eval.eval_data import SRT

ITEM = EvalItem(
    id="q",
    video=Path("v.mp4"),
    question="How many squares appear?",
    options={"A": "One.", "B": "Two."},
    answer="B",
)


def test_videomme_prompt():
    assert videomme.prompt(ITEM, None) == (
        "Select the best answer to the following multiple-choice question based on the video and the "
        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "How many squares appear?\nA. One.\nB. Two.\n\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_videomme_subtitle_prompt_starts_with_the_shown_lines():
    assert videomme.prompt(ITEM, ["hello there", "second line"]) == (
        "This video's subtitles are listed below: \nhello there\nsecond line\n"
        "Select the best answer to the following multiple-choice question based on the video and the "
        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "How many squares appear?\nA. One.\nB. Two.\nThe best answer is:"
    )


def test_videomme_subtitle_prompt_without_lines_says_so():
    assert videomme.prompt(ITEM, []).startswith(
        "This video's subtitles are listed below: \nNo subtitles available\n"
    )


def test_videomme_shows_the_srt_lines_on_screen_at_sampled_frames(tmp_path):
    (tmp_path / "v.srt").write_text(SRT)
    item = EvalItem("q", Path("v.mp4"), "Q?", {"A": "x", "B": "y"}, "A", subtitles=tmp_path / "v.srt")
    assert videomme.subtitle_lines(item, np.array([0.5, 1.0, 2.5])) == ["hello there", "second line"]
    assert videomme.subtitle_lines(item, np.array([2.5])) == []


def test_videomme_missing_srt_shows_no_lines(tmp_path):
    item = EvalItem("q", Path("v.mp4"), "Q?", {"A": "x", "B": "y"}, "A", subtitles=tmp_path / "none.srt")
    assert videomme.subtitle_lines(item, np.array([0.5])) == []


def test_mlvu_prompt():
    assert mlvu.prompt(ITEM) == (
        "\nHow many squares appear?\n(A) One.\n(B) Two.\n"
        "Answer with the best option's letter from the given choices directly.\nBest option: ("
    )


def test_longvideobench_prompt():
    assert longvideobench.prompt(ITEM, None) == (
        "How many squares appear?\nA. One.\nB. Two.\n"
        "Answer with the option's letter from the given choices directly.\n"
    )


def test_longvideobench_subtitle_prompt_puts_the_lines_first():
    assert longvideobench.prompt(ITEM, ["first words"]).startswith(
        "first words\nHow many squares appear?\nA. One."
    )


def test_longvideobench_shows_lines_covering_a_frame_after_the_subtitle_offset(tmp_path):
    (tmp_path / "s.json").write_text(
        '[{"start": "00:00:10.000", "end": "00:00:10.400", "line": "short"},'
        ' {"start": "00:00:11.000", "end": "00:00:13.000", "line": "long"},'
        ' {"timestamp": [14.0, null], "text": "open"}]'
    )
    item = EvalItem(
        "q",
        Path("v.mp4"),
        "Q?",
        {"A": "x", "B": "y"},
        "A",
        subtitles=tmp_path / "s.json",
        subtitle_offset=10.0,
    )
    # "short" (0.0-0.4 s) widens to -0.3..0.7 s; "long" is 1-3 s; "open" runs from 4 s to the end.
    assert longvideobench.subtitle_lines(item, np.array([0.5, 2.0])) == ["short", "long"]
    assert longvideobench.subtitle_lines(item, np.array([0.9, 5.0])) == ["open"]


def test_lvbench_prompt():
    item = EvalItem("q", Path("v.mp4"), "What is on the table?", {"A": "A cup", "B": "Nothing"}, "A")
    assert lvbench.prompt(item) == (
        "Select the best answer to the following multiple-choice question based on the video. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "What is on the table?\nA A cup\nB Nothing\n\n"
        "Answer with the option's letter from the given choices directly."
    )
