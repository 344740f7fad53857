"""Each benchmark's reader turns its release layout into items, and a bad record into a BadRecord."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.eval import longvideobench, lvbench, mlvu, videomme
from lab.eval.items import AnnotationError, BadRecord, EvalItem, unique_ids
from tests.lab.eval.eval_data import (
    VIDEOMME_ROWS,
    mlvu_record,
    videomme_row,
    write_longvideobench,
    write_lvbench,
    write_mlvu,
    write_videomme,
)


def test_videomme_parquet_rows_become_items(tmp_path, clips):
    pytest.importorskip("pyarrow")
    root = write_videomme(tmp_path, clips, VIDEOMME_ROWS, fmt="parquet")
    items = videomme.load(root)
    assert [i.id for i in items] == ["001-1", "001-2", "002-1"]
    assert items[0] == EvalItem(
        id="001-1",
        video=root / "data" / "vidA.mp4",
        question="How many squares appear?",
        options={"A": "One.", "B": "Two.", "C": "Three.", "D": "Four."},
        answer="B",
        categories={
            "duration": "short",
            "domain": "Knowledge",
            "sub_category": "Astronomy",
            "task_type": "Counting Problem",
        },
    )


def test_videomme_json_lines_export_reads_like_the_parquet(tmp_path, clips):
    root = write_videomme(tmp_path, clips, VIDEOMME_ROWS, fmt="jsonl")
    items = videomme.load(root)
    assert [(i.id, i.answer, i.categories["duration"]) for i in items] == [
        ("001-1", "B", "short"),
        ("001-2", "C", "short"),
        ("002-1", "B", "long"),
    ]


def test_videomme_subtitle_variant_points_at_the_srt(tmp_path, clips):
    root = write_videomme(tmp_path, clips, VIDEOMME_ROWS)
    assert videomme.load(root, subtitles=True)[0].subtitles == root / "subtitle" / "vidA.srt"


def test_videomme_row_with_an_answer_outside_the_options_is_a_bad_record(tmp_path, clips):
    root = write_videomme(tmp_path, clips, [videomme_row("003-1", "vidA", answer="E")])
    assert videomme.load(root) == [
        BadRecord(
            "003-1",
            "malformed annotation record: the answer 'E' is not one of the options ABCD",
            {
                "duration": "short",
                "domain": "Knowledge",
                "sub_category": "Astronomy",
                "task_type": "Counting Problem",
            },
        )
    ]


def test_videomme_without_annotation_is_an_annotation_error(tmp_path):
    with pytest.raises(AnnotationError, match=r"expected videomme/test-00000-of-00001\.parquet"):
        videomme.load(tmp_path)


def test_mlvu_answer_text_becomes_its_candidate_letter(tmp_path, clips):
    root = write_mlvu(tmp_path, clips)
    items = mlvu.load(root)
    assert [(i.id, i.answer, i.categories) for i in items] == [
        ("1_plotQA/0", "A", {"task_type": "plotQA"}),
        ("1_plotQA/1", "B", {"task_type": "plotQA"}),
        ("4_count/0", "C", {"task_type": "count"}),
    ]
    assert items[2].video == root / "MLVU" / "video" / "4_count" / "b.mp4"
    assert items[2].options == {"A": "1", "B": "2", "C": "3", "D": "4"}


def test_mlvu_record_without_candidates_is_a_bad_record(tmp_path, clips):
    root = write_mlvu(tmp_path, clips)
    (root / "MLVU" / "json" / "1_plotQA.json").write_text(json.dumps([mlvu_record("a.mp4", candidates=None)]))
    assert mlvu.load(root)[0] == BadRecord(
        "1_plotQA/0", "malformed annotation record: the record has no 'candidates'", {"task_type": "plotQA"}
    )


def test_longvideobench_correct_choice_index_becomes_a_letter(tmp_path, clips):
    root = write_longvideobench(tmp_path, clips)
    items = longvideobench.load(root)
    assert [(i.id, i.answer, i.categories) for i in items] == [
        ("v1_0", "C", {"duration_group": "15", "question_category": "S2E"}),
        ("v1_1", "A", {"duration_group": "15", "question_category": "T3O"}),
        ("v2_0", "B", {"duration_group": "60", "question_category": "S2E"}),
    ]
    assert items[0].options == {"A": "a cup", "B": "a phone", "C": "a book", "D": "a bag", "E": "nothing"}
    assert items[0].video == root / "videos" / "v1.mp4"
    assert items[0].subtitles is None


def test_longvideobench_subtitle_variant_reads_subtitle_path_and_offset(tmp_path, clips):
    root = write_longvideobench(tmp_path, clips)
    item = longvideobench.load(root, subtitles=True)[0]
    assert (item.subtitles, item.subtitle_offset) == (root / "subtitles" / "v1_en.json", 10.0)


def test_lvbench_splits_the_options_out_of_the_question(tmp_path, clips):
    root = write_lvbench(tmp_path, clips)
    items = lvbench.load(root)
    assert items[1] == EvalItem(
        id="12",
        video=root / "videos" / "keyA.mp4",
        question="What is on the table?",
        options={"A": "A cup", "B": "A phone", "C": "A book", "D": "Nothing"},
        answer="C",
        categories={"question_type": ("reasoning", "temporal grounding"), "video_type": "cartoon"},
    )


def test_lvbench_unparseable_line_is_a_bad_record_and_the_rest_still_load(tmp_path, clips):
    root = write_lvbench(tmp_path, clips, extra_lines=("{not json",))
    items = lvbench.load(root)
    assert [i.id for i in items] == ["11", "12", "21", "line3"]
    assert isinstance(items[3], BadRecord)
    assert items[3].message.startswith("malformed annotation line 3: ")


def test_a_repeated_id_after_the_first_becomes_a_bad_record():
    first = BadRecord("q1", "x")
    items = unique_ids([first, EvalItem("q1", Path("v.mp4"), "Q?", {"A": "a", "B": "b"}, "A")])
    assert items == [
        first,
        BadRecord("q1~2", "duplicate id 'q1' (occurrence 2); only the first is evaluated"),
    ]
