"""`flexselect-agent eval`: every benchmark end to end with a tiny model, resume, per-item errors, compare."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.main import main
from lab.eval.benchmarks import BENCHMARKS
from tests.lab.eval.eval_data import (
    BUILDERS,
    ITEM_COUNTS,
    VIDEOMME_ROWS,
    videomme_row,
    write_mlvu_irregular,
    write_videomme,
)

FAST = ("--frames", "4", "--budget", "4", "--layer", "2", "--no-progress")
LINE_KEYS = {
    "id",
    "status",
    "video",
    "categories",
    "answer",
    "prediction",
    "extracted_by",
    "correct",
    "response",
    "frames",
    "subtitle_lines",
    "total_tokens",
    "kept_tokens",
    "video_cached",
    "time_ms",
    "timings_ms",
    "budget",
}


def evaluate(capsys, benchmark: str, data: Path, out: Path, model: Path, *extra: str) -> tuple[int, str, str]:
    code = main(
        ["eval", benchmark, "--data", str(data), "--out", str(out), "--model", str(model), *FAST, *extra]
    )
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory, clips, checkpoint) -> Callable[..., tuple[int, Path]]:
    """Runs a benchmark once per module (per extra flags) on its tiny dataset: (exit code, results dir)."""
    done: dict[tuple[str, ...], tuple[int, Path]] = {}

    def run(benchmark: str, *extra: str) -> tuple[int, Path]:
        if (benchmark, *extra) not in done:
            root = tmp_path_factory.mktemp(benchmark)
            data = BUILDERS[benchmark](root / "data", clips)
            argv = [
                "eval",
                benchmark,
                "--data",
                str(data),
                "--out",
                str(root / "out"),
                "--model",
                str(checkpoint),
            ]
            done[(benchmark, *extra)] = (main([*argv, *FAST, *extra]), root / "out")
        return done[(benchmark, *extra)]

    return run


@pytest.mark.parametrize("benchmark", sorted(BUILDERS))
def test_a_benchmark_runs_end_to_end_and_reports_its_categories(benchmark, finished):
    code, out = finished(benchmark)
    items, summary = lines(out), summary_of(out)
    assert code == 0
    assert len(items) == ITEM_COUNTS[benchmark]
    assert all(line.keys() == LINE_KEYS and line["status"] == "ok" for line in items)
    assert all(
        line["kept_tokens"] == 4 and line["total_tokens"] == 8 and line["frames"] == 4 for line in items
    )
    assert (summary["items"], summary["scored"], summary["errors"]) == (3, 3, 0)
    assert list(summary["categories"]) == list(BENCHMARKS[benchmark].categories)


def test_questions_about_the_same_video_reuse_its_encoding(finished):
    _, out = finished("videomme")
    cached = [(line["id"], line["video_cached"], line["timings_ms"]["encode"] == 0.0) for line in lines(out)]
    assert cached == [("001-1", False, False), ("001-2", True, True), ("002-1", False, False)]


def test_subtitle_variant_shows_the_lines_at_sampled_frames(finished):
    _, out = finished("videomme_sub")
    # 4 frames of a 3 s clip sit near 0.4, 1.1, 1.9 and 2.6 s: both early .srt lines are on screen.
    assert [line["subtitle_lines"] for line in lines(out)] == [2, 2, 0]


def test_lvbench_counts_an_item_under_each_of_its_question_types(finished):
    _, out = finished("lvbench")
    counts = {label: c["n"] for label, c in summary_of(out)["categories"]["question_type"].items()}
    assert counts == {
        "entity recognition": 1,
        "event understanding": 1,
        "reasoning": 1,
        "temporal grounding": 1,
    }


def test_mlvu_headline_sums_the_task_accuracies_over_all_seven_tasks(finished):
    _, out = finished("mlvu")
    summary = summary_of(out)
    tasks = summary["categories"]["task_type"]
    assert summary["headline"] == {
        "metric": "m_avg",
        "value": round((tasks["plotQA"]["accuracy"] + tasks["count"]["accuracy"]) / 7, 2),
        "divided_by": 7,
    }
    assert summary["complete"] is False  # five of the seven task files are absent


def test_irregular_official_mlvu_records_are_scored_and_say_how(tmp_path, clips, checkpoint, capsys):
    data = write_mlvu_irregular(tmp_path / "data", clips)
    code, stdout, _ = evaluate(capsys, "mlvu", data, tmp_path / "out", checkpoint)
    by_id = {line["id"]: line for line in lines(tmp_path / "out")}
    notes = summary_of(tmp_path / "out")["annotation_notes"]
    assert code == 0
    assert [by_id[f"1_plotQA/{i}"]["status"] for i in range(4)] == ["ok"] * 4
    assert (by_id["1_plotQA/1"]["answer"], by_id["1_plotQA/2"]["answer"]) == ("C", "C")
    assert (by_id["1_plotQA/3"]["answer"], by_id["1_plotQA/3"]["correct"]) == (None, False)
    assert list(notes) == ["1_plotQA/1", "1_plotQA/2", "1_plotQA/3"]
    assert [by_id[k]["note"] for k in notes] == list(notes.values())
    assert "3 irregular official records, scored as the official scorer does:" in stdout
    assert f"  1_plotQA/2: {notes['1_plotQA/2']}" in stdout.splitlines()


def test_a_preset_samples_at_its_fps(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    code = main(
        [
            *("eval", "lvbench", "--data", str(data), "--out", str(tmp_path / "out")),
            *("--preset", "qwen2_5_vl_7b", "--model", str(checkpoint), "--layer", "2", "--budget", "4"),
            "--no-progress",
        ]
    )
    capsys.readouterr()
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert code == 0
    assert [line["frames"] for line in lines(tmp_path / "out")] == [6, 6, 6]  # 2 fps x 3 s
    assert (run["preset"], run["max_pixels"], run["selection"]["budget"]) == ("qwen2_5_vl_7b", 172480, 4)


def test_rerunning_a_finished_run_redoes_nothing_and_loads_no_model(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    model = shutil.copytree(checkpoint, tmp_path / "model")
    evaluate(capsys, "lvbench", data, tmp_path / "out", model)
    before = (tmp_path / "out" / "items.jsonl").read_text()
    shutil.rmtree(model)
    code, stdout, _ = evaluate(capsys, "lvbench", data, tmp_path / "out", model)
    assert code == 0
    assert (tmp_path / "out" / "items.jsonl").read_text() == before
    assert "3 scored, 0 errors, 0 not run" in stdout


def test_resume_answers_only_the_items_not_yet_in_items_jsonl(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint, "--limit", "2")
    first = (tmp_path / "out" / "items.jsonl").read_text().splitlines()
    evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint)
    after = (tmp_path / "out" / "items.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in first] == ["11", "12"]
    assert after[:2] == first
    assert [json.loads(line)["id"] for line in after] == ["11", "12", "21"]


def test_a_limit_rerun_keeps_the_summary_of_the_larger_run(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint)
    full = summary_of(tmp_path / "out")
    code, stdout, _ = evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint, "--limit", "1")
    assert code == 0
    assert summary_of(tmp_path / "out") == full
    assert (full["done"], full["scored"], full["complete"]) == (3, 3, True)
    assert "3 scored, 0 errors, 0 not run" in stdout


def test_a_limited_run_says_it_is_partial(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    _, stdout, _ = evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint, "--limit", "1")
    summary = summary_of(tmp_path / "out")
    assert (summary["items"], summary["done"], summary["partial"]) == (3, 1, ["2 of 3 items not run"])
    assert stdout.splitlines()[1] == "PARTIAL RUN, not comparable with the paper: 2 of 3 items not run"


def test_a_resumed_progress_bar_shows_the_accuracy_of_every_item_done(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint)
    done = lines(tmp_path / "out")
    argv = [
        "eval",
        "lvbench",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--model",
        str(checkpoint),
    ]
    main([*argv, "--frames", "4", "--budget", "4", "--layer", "2"])  # nothing pending: the bar only resumes
    expected = f"acc={100 * sum(line['correct'] for line in done) / len(done):.1f}%"
    assert expected in capsys.readouterr().err


def test_a_torn_last_line_is_dropped_and_its_item_redone(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint, "--limit", "2")
    path = tmp_path / "out" / "items.jsonl"
    path.write_text(path.read_text()[:-20])  # interrupted while writing the second line
    evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint)
    assert [line["id"] for line in lines(tmp_path / "out")] == ["11", "12", "21"]


def test_resuming_with_other_settings_is_refused(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint, "--limit", "1")
    code, _, stderr = evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint, "--budget", "2")
    assert code == 2
    assert stderr.startswith("flexselect-agent eval: error: ")
    assert "selection:" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_missing_video_is_an_error_line_and_the_run_goes_on(tmp_path, clips, checkpoint, capsys):
    data = write_videomme(tmp_path / "data", clips, [*VIDEOMME_ROWS, videomme_row("009-1", "gone")])
    code, stdout, _ = evaluate(capsys, "videomme", data, tmp_path / "out", checkpoint)
    items = lines(tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert code == 0
    assert [line["status"] for line in items] == ["ok", "ok", "ok", "error"]
    assert items[3]["stage"] == "video"
    assert items[3]["error"] == f"video not found: {data / 'data' / 'gone.mp4'}"
    assert (summary["scored"], summary["errors"], summary["errors_by_stage"]) == (3, 1, {"video": 1})
    assert "3 scored, 1 errors, 0 not run" in stdout
    assert (
        stdout.splitlines()[1] == "PARTIAL RUN, not comparable with the paper: 1 items are errors, not scored"
    )
    assert stdout.splitlines()[3].split()[:2] == ["overall", "3"]


def test_an_unreadable_video_is_an_error_line(tmp_path, clips, checkpoint, capsys):
    data = write_videomme(tmp_path / "data", clips, VIDEOMME_ROWS)
    (data / "data" / "vidB.mp4").write_bytes(b"not a video")
    evaluate(capsys, "videomme", data, tmp_path / "out", checkpoint)
    last = lines(tmp_path / "out")[-1]
    assert (last["id"], last["status"], last["stage"]) == ("002-1", "error", "video")
    assert last["error"].startswith("cannot read video: ")


def test_a_malformed_record_is_an_error_line_and_the_run_goes_on(tmp_path, clips, checkpoint, capsys):
    bad = videomme_row("009-1", "vidA", options="A. one B. two")
    data = write_videomme(tmp_path / "data", clips, [VIDEOMME_ROWS[0], bad, "{torn", VIDEOMME_ROWS[2]])
    code, _, _ = evaluate(capsys, "videomme", data, tmp_path / "out", checkpoint)
    items = lines(tmp_path / "out")
    assert code == 0
    assert [(line["id"], line["status"], line.get("stage")) for line in items] == [
        ("001-1", "ok", None),
        ("009-1", "error", "annotation"),
        ("row2", "error", "annotation"),
        ("002-1", "ok", None),
    ]
    assert items[1]["error"] == "malformed annotation record: 'options' is str, expected list or tuple"


def test_retry_errors_answers_an_item_once_its_video_exists(tmp_path, clips, checkpoint, capsys):
    data = write_videomme(tmp_path / "data", clips, [videomme_row("009-1", "late")])
    evaluate(capsys, "videomme", data, tmp_path / "out", checkpoint)
    shutil.copyfile(clips[2], data / "data" / "late.mp4")
    evaluate(capsys, "videomme", data, tmp_path / "out", checkpoint, "--retry-errors")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [line["status"] for line in lines(tmp_path / "out")] == ["error", "ok"]
    assert (summary["done"], summary["scored"], summary["errors"]) == (1, 1, 0)


def test_lite_scorer_without_a_selector_for_this_model_is_a_usage_error(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    code, _, stderr = evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint, "--scorer", "lite")
    assert code == 2
    prefix = f"flexselect-agent eval: error: cannot load model '{checkpoint}': --scorer lite: "
    assert stderr.startswith(prefix)
    assert "needs --selector DIR" in stderr


def test_lite_scorer_answers_with_a_selector_for_the_model(tmp_path, clips, checkpoint, capsys):
    from flexselect.adapters import load_adapter
    from tests.selector.selector_helpers import tiny_selector

    tiny_selector(load_adapter(checkpoint, dtype="float32")).save(tmp_path / "selector")
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    code, _, _ = evaluate(
        capsys, "lvbench", data, tmp_path / "out", checkpoint, "--scorer", "lite", "--selector",
        str(tmp_path / "selector"),
    )  # fmt: skip
    assert code == 0
    assert [line["status"] for line in lines(tmp_path / "out")] == ["ok"] * ITEM_COUNTS["lvbench"]


def test_a_directory_without_annotations_is_a_usage_error(tmp_path, checkpoint, capsys):
    code, _, stderr = evaluate(capsys, "longvideobench", tmp_path, tmp_path / "out", checkpoint)
    assert (code, stderr) == (
        2,
        f"flexselect-agent eval: error: no LongVideoBench annotation in {tmp_path}: expected lvb_val.json\n",
    )


def test_compare_prints_both_runs_side_by_side_with_the_difference(finished, capsys):
    _, base = finished("lvbench", "--scorer", "none")
    _, flex = finished("lvbench")
    capsys.readouterr()
    code = main(["eval", "compare", str(base), str(flex)])
    table = capsys.readouterr().out.splitlines()
    assert code == 0
    assert table[0] == "LVBench: 3 items answered by both (A: 3, B: 3)"
    assert table[1].endswith("qwen2_5_vl scorer=none 4 frames")
    assert table[2].endswith("qwen2_5_vl scorer=reference 4 frames budget=4")
    assert table[3].split() == (
        ["category", "value", "n", "A", "acc", "B", "acc", "Δ", "acc", "A", "ms", "B", "ms", "A/B", "time"]
    )
    assert table[4].split()[:2] == ["overall", "3"]
    assert [row.split()[0] for row in table[5:]] == ["question_type"] * 4 + ["video_type"] * 2


def test_compare_refuses_two_different_benchmarks(finished, capsys):
    _, x = finished("lvbench")
    _, y = finished("mlvu")
    capsys.readouterr()
    code = main(["eval", "compare", str(x), str(y)])
    assert code == 2
    assert "cannot compare lvbench" in capsys.readouterr().err


def test_a_run_whose_model_cannot_load_leaves_no_results_behind(tmp_path, clips, checkpoint, capsys):
    data = BUILDERS["lvbench"](tmp_path / "data", clips)
    code, _, stderr = evaluate(capsys, "lvbench", data, tmp_path / "out", checkpoint, "--layer", "9")
    assert code == 2
    assert stderr.endswith(f"cannot load model '{checkpoint}': reference layer 9 is outside 0..3\n")
    assert not (tmp_path / "out").exists()
