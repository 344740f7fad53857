"""Every benchmark script runs end to end on the CPU at a tiny setting and writes its table as JSON.

No GPU is available here; these runs keep the scripts' code paths (the agent's memory, selection, the
selector and its cache, answering) working so that a GPU run only changes the flags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, timeout: float = 300.0) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / name), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_gpu_check_runs_tests_and_every_gpu_benchmark_into_one_folder(tmp_path):
    # The one-command GPU check at its tiny CPU setting: the same script a GPU run uses, so it cannot rot.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--tiny", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=480,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    for step in ("gpu-tests", "answer-latency", "streams-per-gpu", "selector-ingest"):
        assert f"== {step}: exit 0 in" in summary
    assert "cuda False" in (tmp_path / "environment.txt").read_text()
    assert (tmp_path / "gpu-tests.xml").stat().st_size > 0
    _check_answer_latency(tmp_path)
    _check_streams_per_gpu(tmp_path)
    _check_selector_ingest(tmp_path)


def _check_answer_latency(out: Path) -> None:
    rows = json.loads((out / "answer_latency_tiny.json").read_text())["rows"]
    methods = ["full", "reference", "lite", "lite-cached", "lite-cached-graphs", "lite-agent"]
    assert [r["method"] for r in rows] == methods
    assert [r["decoder"] for r in rows] == ["eager"] * 4 + ["static", "eager"]  # no CUDA: no graphs
    assert all(r["ttft_ms"] > 0 and r["total_ms"] >= r["ttft_ms"] for r in rows)
    agent = rows[5]  # the agent's own path reads what lite-cached reads: the layout, then the kept rows
    assert agent["read_mb"] == rows[3]["read_mb"] and agent["rank_ms"] > 0 and agent["select_ms"] > 0
    cached = rows[3]
    assert cached["ingest_ms"] > 0 and cached["select_ms"] < rows[2]["select_ms"]  # lite: a fresh pass
    assert (out / "answer_latency_tiny.png").stat().st_size > 0
    assert "only the ratios mean anything" in (out / "answer-latency.log").read_text()


def _check_selector_ingest(out: Path) -> None:
    rows = json.loads((out / "selector_ingest_tiny.json").read_text())["rows"]
    assert [(r["streams"], r["rows"]) for r in rows] == [(1, 64), (4, 256)]
    assert all(r["one_by_one_ms"] > 0 and r["batched_ms"] > 0 for r in rows)
    assert all(r["max_score_diff"] <= 1e-5 for r in rows)


def _check_streams_per_gpu(out: Path) -> None:
    report = json.loads(next(out.glob("streams_per_gpu*.json")).read_text())
    assert report["rows"] and report["rows"][0]["streams"] == 1
    assert [r["chunks"] for r in report["throughput"]] == [1, 4]
    assert all(r["vision_stock_fps"] > 0 and r["vision_batched_fps"] > 0 for r in report["throughput"])
    assert report["vision_attention"] == "flexselect_flash_varlen_sdpa"
    assert report["long_run"]["media_hours_covered"] > 0
    assert "largest sustained load" in (out / "streams-per-gpu.log").read_text()


def test_selection_vs_prefill_runs(tmp_path):
    run_script("selection_vs_prefill.py", "--frames", "16,64", "--repeats", "1", "--out", str(tmp_path))
    assert list(tmp_path.glob("*.json"))


def test_selector_cost_compares_cached_queries_with_fresh_passes(tmp_path):
    target = tmp_path / "cost.json"
    run_script(
        "selector_cost.py", "--sizes", "1024,2048", "--group", "1024", "--chunk", "512", "--repeats", "1",
        "--json", str(target),
    )  # fmt: skip
    rows = json.loads(target.read_text())["rows"]
    assert [r["tokens"] for r in rows] == [1024, 2048]
    assert all(r["ratio"] > 1 for r in rows)


def test_memory_needle_survival_streams_a_world_through_both_policies(tmp_path):
    run_script(
        "memory_needle_survival.py", "--hours", "0.02", "--kinds", "color", "--budgets", "0.2",
        "--out", str(tmp_path),
    )  # fmt: skip
    rows = json.loads((tmp_path / "needle_survival_toy.json").read_text())["rows"]
    assert [r["policy"] for r in rows] == ["attention+redundancy", "redundancy only"]
    assert all(0.0 <= r["survived"] <= 1.0 for r in rows)


def test_memory_needle_survival_asks_a_saved_stream_again_without_streaming_it(tmp_path):
    args = ["--hours", "0.01", "--kinds", "color", "--budgets", "0.2", "--policies", "attention"]
    saved = tmp_path / "streams"
    runs = []
    for out in (tmp_path / "first", tmp_path / "second"):
        run_script("memory_needle_survival.py", *args, "--retained", str(saved), "--out", str(out))
        runs.append(json.loads((out / "needle_survival_toy.json").read_text())["rows"])
    assert len(list(saved.glob("*.pt"))) == 1
    assert runs[1] == runs[0]  # stream_s too: the second run read the first one's stream


def test_selector_drop_measures_cached_scores_after_eviction(tmp_path):
    target = tmp_path / "drop.json"
    out = run_script("selector_drop.py", "--n", "2", "--frames", "32", "--group", "16", "--json", str(target))
    assert "no drop: max |cached - fresh|" in out
    assert json.loads(target.read_text())["max_diff_no_drop"] < 1e-4


def test_memory_throughput_measures_both_backends(tmp_path):
    target = tmp_path / "memory.json"
    run_script(
        "memory_throughput.py", "--dim", "64", "--read-tokens", "2048", "--evict-budget", "512",
        "--repeat", "1", "--json-out", str(target),
    )  # fmt: skip
    rows = json.loads(target.read_text())["rows"]
    assert [r["backend"] for r in rows] == ["local", "redis"]


def test_read_rows_times_the_kept_rows_read_against_the_previous_loop(tmp_path):
    out = run_script(
        "read_rows.py", "--retained", "2048", "--kept", "256", "--settings", "64:float32,32:bfloat16",
        "--levels", "3", "--side", "4", "--repeats", "1", "--out", str(tmp_path),
    )  # fmt: skip
    report = json.loads((tmp_path / "read_rows.json").read_text())
    settings = [(r["dim"], r["dtype"], r["kept"]) for r in report["rows"]]
    assert settings == [(64, "float32", 256), (32, "bfloat16", 256)]
    assert all(r["retained"] == 2048 and r["chunks"] > 1 and r["ratio"] > 0 for r in report["rows"])
    assert {"device", "torch", "date"} <= set(report["environment"])
    assert "previous per-chunk loop vs now" in out


@pytest.mark.services
def test_row_match_times_every_family_against_the_exact_path(tmp_path):
    out = run_script("row_match.py", "--sizes", "2048", "--repeats", "1", "--out", str(tmp_path))
    report = json.loads((tmp_path / "row_match.json").read_text())
    families = [r["family"] for r in report["rows"]]
    assert families == ["qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl"]
    assert all(r["evicted_rows"] == r["rows"] // 32 for r in report["rows"])
    assert all(r["in_step_ms"] > 0 and r["evicted_ms"] > 0 and r["exact_ms"] > 0 for r in report["rows"])
    assert {"device", "torch", "date"} <= set(report["environment"])
    assert "cache-to-memory row matching" in out


def test_cluster_scaling_serves_more_streams_with_more_agents(tmp_path):
    out = run_script(
        "cluster_scaling.py", "--agents", "3", "--streams", "3", "--capacity", "1", "--seconds", "4",
        "--out", str(tmp_path), timeout=600,
    )  # fmt: skip
    rows = json.loads((tmp_path / "cluster_scaling_standalone.json").read_text())["rows"]
    assert [r["agents"] for r in rows] == [1, 2, 3]
    assert [r["streams_served"] for r in rows] == [1, 2, 3]
    assert all(r["answered"] > 0 and r["questions_per_s"] > 0 for r in rows)
    assert "questions/s relative to 1 agent" in out
