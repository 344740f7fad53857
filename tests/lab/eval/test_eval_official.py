"""The harness against the official annotation layouts and scorers (issue 20, part 3).

Each test is built from the official record or scorer rule it concerns:
- MLVU: FlagOpen/FlagEmbedding MLVU/evaluation/multiple_choice_evaluation/choice_bench.py (`qa_template`,
  `check_ans`), VLMEvalKit vlmeval/dataset/mlvu.py, and the paper's lmms-eval fork
  (yunzhuzhang0918/flexselect eval/lmms_eval/tasks/mlvu_new/utils.py, `mlvu_aggregate_results_dev`).
- LVBench: THUDM/LVBench data/README.md, scripts/save_video_txt.py and scripts/download.sh (video2dataset).
- Option extraction: the fork's eval/lmms_eval/tasks/videomme/utils.py `extract_characters_regex`.
"""

from __future__ import annotations

import json

import pytest

from lab.eval import lvbench, mlvu, runner
from lab.eval.benchmarks import BENCHMARKS
from lab.eval.items import BadRecord
from lab.eval.options import Choice, extract_choice
from lab.eval.summary import format_summary, summarize
from tests.lab.eval.eval_data import mlvu_record, write_lvbench_repository, write_mlvu, write_mlvu_irregular

MLVU = BENCHMARKS["mlvu"]


# ------------------------------------------------------------------------------- MLVU gold letters
def test_mlvu_gold_letter_is_the_last_candidate_with_the_answer_text(tmp_path, clips):
    item = mlvu.load(write_mlvu_irregular(tmp_path, clips))[1]
    assert (item.options, item.answer) == ({"A": "red", "B": "blue", "C": "red", "D": "green"}, "C")
    assert item.note == (
        "the answer text is candidates A, C: the gold letter is the last, C, "
        "as in choice_bench.py and VLMEvalKit"
    )


def test_mlvu_record_with_an_empty_option_is_kept_and_shown_empty(tmp_path, clips):
    item = mlvu.load(write_mlvu_irregular(tmp_path, clips))[2]
    assert (item.answer, item.options["B"]) == ("C", "")
    assert item.note == "option B is empty and is shown empty, as choice_bench.py does"
    assert "\n(A) red\n(B) \n(C) blue\n" in mlvu.prompt(item)


def test_mlvu_answer_matching_no_candidate_is_answered_and_always_wrong(tmp_path, clips):
    item = mlvu.load(write_mlvu_irregular(tmp_path, clips))[3]
    assert item.answer is None
    assert item.note == (
        "the answer 'Blue ' matches no candidate: choice_bench.py's gold letter is then '@', which no reply "
        "can match, so the item is answered and counts as wrong"
    )


def test_mlvu_record_with_an_empty_question_and_one_candidate_is_asked_as_it_is(tmp_path, clips):
    root = write_mlvu(tmp_path, clips)
    record = mlvu_record("a.mp4", question=" ", candidates=["red"])
    (root / "MLVU" / "json" / "1_plotQA.json").write_text(json.dumps([record]))
    item = mlvu.load(root)[0]
    assert (item.question, item.options, item.answer) == ("", {"A": "red"}, "A")
    assert item.note == (
        "the question is empty and is asked empty, as choice_bench.py does; "
        "the record has a single candidate and is asked as it is, as choice_bench.py does"
    )


def test_a_regular_mlvu_record_has_no_note(tmp_path, clips):
    item = mlvu.load(write_mlvu_irregular(tmp_path, clips))[0]
    assert (item.answer, item.note) == ("A", None)


def test_a_truncated_mlvu_task_file_is_that_tasks_error_and_the_others_load(tmp_path, clips):
    root = write_mlvu(tmp_path, clips)
    (root / "MLVU" / "json" / "1_plotQA.json").write_text(json.dumps([mlvu_record("a.mp4")])[:-20])
    items = mlvu.load(root)
    assert [item.id for item in items] == ["1_plotQA", "4_count/0"]
    assert isinstance(items[0], BadRecord)
    assert items[0].categories == {"task_type": "plotQA"}
    assert items[0].message.startswith("task file 1_plotQA.json is not JSON (")
    assert items[0].message.endswith("); none of its questions is evaluated")


# ------------------------------------------------------------------------------------ MLVU M-Avg
def line(item_id: str, task: str, correct: bool) -> dict:
    return {
        "id": item_id,
        "status": "ok",
        "categories": {"task_type": task},
        "correct": correct,
        "time_ms": 1.0,
    }


SETTINGS = {"model": "m", "scorer": "reference"}


def test_m_avg_divides_by_all_seven_tasks_and_a_partial_run_says_so():
    records = {
        r["id"]: r
        for r in (line("p0", "plotQA", True), line("p1", "plotQA", False), line("c0", "count", True))
    }
    summary = summarize(records, MLVU, items=5, settings=SETTINGS)
    assert summary["headline"] == {"metric": "m_avg", "value": round((50.0 + 100.0) / 7, 2), "divided_by": 7}
    assert summary["complete"] is False
    assert summary["partial"] == [
        "2 of 5 items not run",
        "no scored items for task_type needle, ego, order, anomaly_reco, topic_reasoning "
        "(each counts 0 in M-Avg)",
    ]
    printed = format_summary(summary).splitlines()
    assert printed[1] == f"PARTIAL RUN, not comparable with the paper: {'; '.join(summary['partial'])}"
    assert (
        printed[2] == "M-Avg (the 7 task accuracies summed / 7, a task without scored items counting 0): 21.4"
    )


def test_a_run_of_every_task_and_item_is_complete():
    records = {f"{task}/0": line(f"{task}/0", task, True) for task in mlvu.TASKS}
    summary = summarize(records, MLVU, items=7, settings=SETTINGS)
    assert (summary["complete"], summary["partial"], summary["headline"]["value"]) == (True, [], 100.0)
    assert "PARTIAL" not in format_summary(summary)


def test_an_error_line_makes_a_run_partial():
    records = {f"{task}/0": line(f"{task}/0", task, True) for task in mlvu.TASKS}
    records["x"] = {"id": "x", "status": "error", "stage": "video", "categories": {"task_type": "ego"}}
    assert summarize(records, MLVU, items=8, settings=SETTINGS)["partial"] == [
        "1 items are errors, not scored"
    ]


def test_the_summary_lists_each_irregular_record_and_how_it_was_scored():
    noted = {**line("1_plotQA/23", "plotQA", False), "note": "option B is empty and is shown empty"}
    summary = summarize({"1_plotQA/23": noted}, MLVU, items=1, settings=SETTINGS)
    assert summary["annotation_notes"] == {"1_plotQA/23": "option B is empty and is shown empty"}
    assert format_summary(summary).splitlines()[-2:] == [
        "1 irregular official records, scored as the official scorer does:",
        "  1_plotQA/23: option B is empty and is shown empty",
    ]


# ---------------------------------------------------------------------- LVBench official download
def test_lvbench_reads_the_repository_root_and_its_numbered_downloads(tmp_path, clips):
    root = write_lvbench_repository(tmp_path, clips)
    videos = {item.id: item.video for item in lvbench.load(root)}
    shard = root / "scripts" / "videos" / "00000"
    assert videos["11"] == videos["12"] == shard / "000000005.mp4"  # named by its .json's URL
    assert videos["21"] == shard / "000000001.mp4"  # metadata line 2 -> sample 1, no .json
    assert videos["31"] == root / "videos" / "keyC.mp4"


def test_a_missing_lvbench_video_says_which_file_is_expected_and_how_to_get_it(tmp_path, clips):
    root = write_lvbench_repository(tmp_path, clips)
    item = next(i for i in lvbench.load(root) if i.id == "31")
    error = runner.evaluate(item, BENCHMARKS["lvbench"], session=None)  # type: ignore[arg-type]  # not reached
    assert error["error"] == (
        f"video not found: {root / 'videos' / 'keyC.mp4'} (LVBench video keyC: expected "
        f"{root / 'videos' / 'keyC.mp4'}, or the official download's "
        f"{root / 'scripts' / 'videos' / '00000' / '000000002.mp4'} with its .json naming "
        "https://www.youtube.com/watch?v=keyC (the video of metadata line 3); run scripts/download.sh of the "
        "LVBench repository in its scripts/ folder and pass the repository root as --data, or save the video "
        "as <key>.mp4)"
    )


def test_a_key_named_lvbench_video_wins_over_a_numbered_one(tmp_path, clips):
    root = write_lvbench_repository(tmp_path, clips)
    named = root / "videos" / "keyB.mp4"
    named.parent.mkdir()
    named.write_bytes((root / "scripts" / "videos" / "00000" / "000000001.mp4").read_bytes())
    assert next(i for i in lvbench.load(root) if i.id == "21").video == named


# ------------------------------------------------------------------------------ answer extraction
OPTIONS = {"A": "a cat", "B": "I'm not sure", "C": "unable to tell", "D": "$1,000", "E": "A Big Dog"}


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("I'm not sure", "B"),  # the option's text, not a refusal
        ("I'm not sure.", "B"),
        ("Unable to tell", "C"),
        ("A Big Dog", "E"),  # starts with a capital A before a capital word
        ("$1,000", "D"),
        ("1000 dollars", "D"),
        ("USD 1000", "D"),
        ("It costs US$1000.", "D"),
    ],
)
def test_a_reply_that_is_an_options_text_is_that_option(reply, letter):
    assert extract_choice(reply, OPTIONS) == Choice(letter, "text")


def test_a_big_capital_word_reply_is_not_letter_a():
    assert extract_choice("A Big Dog", {"A": "A Small Cat", "B": "A Big Dog"}) == Choice("B", "text")


@pytest.mark.parametrize(
    ("amount", "letter"), [("€5", "A"), ("5 euros", "A"), ("£15", "B"), ("15 pounds", "B")]
)
def test_currency_symbols_and_words_name_the_same_amount(amount, letter):
    assert extract_choice(amount, {"A": "5 EUR", "B": "GBP 15"}) == Choice(letter, "text")


def test_a_number_inside_a_longer_number_is_not_that_option():
    assert extract_choice("It was 15 dollars.", {"A": "$5", "B": "$15"}) == Choice("B", "text")


@pytest.mark.parametrize(
    "reply",
    [
        "Answer: C",  # the paper's VideoMME/LVBench regex reads A (from "Answer"); its MLVU rule reads none
        "Best option: (C) ring",  # the paper's VideoMME/LVBench regex reads B (from "Best"); MLVU reads C
    ],
)
def test_documented_departure_deterministic_replies_read_as_the_letter_they_name(reply):
    assert extract_choice(reply, {"A": "cup", "B": "box", "C": "ring", "D": "key"}) == Choice("C", "letter")
