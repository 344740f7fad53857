"""Tiny benchmark directories in each release's own layout, around short generated clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np

CLIP_SECONDS = 3.0
CLIP_FPS = 4


def write_clip(path: Path, seed: int) -> Path:
    """A 3 s, 4 fps, 64x64 H.264 clip of random frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=CLIP_FPS)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(int(CLIP_SECONDS * CLIP_FPS)):
            frame = av.VideoFrame.from_ndarray((rng.random((64, 64, 3)) * 255).astype(np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def place(clip: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, path)
    return path


# ------------------------------------------------------------------------------------------ VideoMME
def videomme_row(qid: str, video_id: str, **extra: Any) -> dict[str, Any]:
    row = {
        "video_id": qid.split("-")[0],
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "Astronomy",
        "url": f"https://www.youtube.com/watch?v={video_id}",
        "videoID": video_id,
        "question_id": qid,
        "task_type": "Counting Problem",
        "question": "How many squares appear?",
        "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."],
        "answer": "B",
    }
    return {**row, **extra}


VIDEOMME_ROWS = [
    videomme_row("001-1", "vidA"),
    videomme_row("001-2", "vidA", task_type="OCR Problems", answer="C"),
    videomme_row("002-1", "vidB", duration="long", domain="Sports Competition", sub_category="Football"),
]
SRT = (
    '1\n00:00:00,000 --> 00:00:01,000\n<font color="white" size=".72c">hello there</font>\n\n'
    '2\n00:00:01,000 --> 00:00:02,000\n<font color="white" size=".72c">second line</font>\n\n'
    '3\n00:00:10,000 --> 00:00:12,000\n<font color="white" size=".72c">after the end</font>\n'
)


def write_videomme(root: Path, clips: list[Path], rows: list[dict[str, Any]], *, fmt: str = "jsonl") -> Path:
    """DIR/videomme/test-00000-of-00001.parquet (or a .jsonl export), data/<videoID>.mp4, subtitle/."""
    (root / "videomme").mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), root / "videomme" / "test-00000-of-00001.parquet")
    else:
        lines = "".join((json.dumps(r) if isinstance(r, dict) else str(r)) + "\n" for r in rows)
        (root / "videomme" / "test.jsonl").write_text(lines)
    place(clips[0], root / "data" / "vidA.mp4")
    place(clips[1], root / "data" / "vidB.mp4")
    (root / "subtitle").mkdir(exist_ok=True)
    (root / "subtitle" / "vidA.srt").write_text(SRT)
    return root


# -------------------------------------------------------------------------------------------- MLVU
def mlvu_record(video: str, answer: str = "red", **extra: Any) -> dict[str, Any]:
    record = {
        "video": video,
        "duration": 3.0,
        "question": "What color is the car?",
        "candidates": ["red", "blue", "green", "white"],
        "answer": answer,
        "question_type": "plotQA",
    }
    return {**record, **extra}


def write_mlvu(root: Path, clips: list[Path]) -> Path:
    """DIR/MLVU/json/<N>_<task>.json and DIR/MLVU/video/<N>_<task>/<video>."""
    base = root / "MLVU"
    (base / "json").mkdir(parents=True, exist_ok=True)
    plot = [mlvu_record("a.mp4"), mlvu_record("a.mp4", answer="blue", question="Which car leaves first?")]
    count = [mlvu_record("b.mp4", answer="3", candidates=["1", "2", "3", "4"], question_type="count")]
    (base / "json" / "1_plotQA.json").write_text(json.dumps(plot))
    (base / "json" / "4_count.json").write_text(json.dumps(count))
    (base / "json" / "9_summary.json").write_text(json.dumps([{"video": "a.mp4", "question": "Sum?"}]))
    place(clips[0], base / "video" / "1_plotQA" / "a.mp4")
    place(clips[1], base / "video" / "4_count" / "b.mp4")
    return root


# -------------------------------------------------------------------------------- LongVideoBench
def lvb_record(rid: str, video: str, **extra: Any) -> dict[str, Any]:
    record = {
        "video_id": video,
        "question": "What does the person in the red shirt hold?",
        "question_wo_referring_query": "What does the person hold?",
        "candidates": ["a cup", "a phone", "a book", "a bag", "nothing"],
        "correct_choice": 2,
        "position": [1, 2],
        "topic_category": "NP-News-Programs",
        "question_category": "S2E",
        "level": "L1-Perception",
        "id": rid,
        "video_path": f"{video}.mp4",
        "subtitle_path": f"{video}_en.json",
        "duration_group": 15,
        "starting_timestamp_for_subtitles": 10.0,
        "duration": 3.0,
        "view_count": 10,
    }
    return {**record, **extra}


def write_longvideobench(root: Path, clips: list[Path]) -> Path:
    """DIR/lvb_val.json, videos/<video_path>, subtitles/<subtitle_path>."""
    root.mkdir(parents=True, exist_ok=True)
    records = [
        lvb_record("v1_0", "v1"),
        lvb_record("v1_1", "v1", question_category="T3O", correct_choice=0),
        lvb_record("v2_0", "v2", duration_group=60, candidates=["yes", "no", "maybe"], correct_choice=1),
    ]
    (root / "lvb_val.json").write_text(json.dumps(records))
    place(clips[0], root / "videos" / "v1.mp4")
    place(clips[1], root / "videos" / "v2.mp4")
    subtitles = [
        {"start": "00:00:10.000", "end": "00:00:11.500", "line": "first words"},
        {"start": "00:00:30.000", "end": "00:00:31.000", "line": "much later"},
    ]
    (root / "subtitles").mkdir(exist_ok=True)
    (root / "subtitles" / "v1_en.json").write_text(json.dumps(subtitles))
    (root / "subtitles" / "v2_en.json").write_text(json.dumps([{"timestamp": [10.2, None], "text": "on"}]))
    return root


# ---------------------------------------------------------------------------------------- LVBench
def lvbench_qa(uid: int, answer: str = "A", types: tuple[str, ...] = ("entity recognition",)) -> dict:
    return {
        "uid": uid,
        "question": "What is on the table?\n(A) A cup\n(B) A phone\n(C) A book\n(D) Nothing",
        "answer": answer,
        "question_type": list(types),
        "time_reference": "00:01-00:02",
    }


def write_lvbench(root: Path, clips: list[Path], *, extra_lines: tuple[str, ...] = ()) -> Path:
    """DIR/video_info.meta.jsonl and DIR/videos/<key>.mp4."""
    root.mkdir(parents=True, exist_ok=True)
    videos = [
        {
            "key": "keyA",
            "type": "cartoon",
            "video_info": {"duration_minutes": 0.05, "fps": 4.0, "resolution": {"width": 64, "height": 64}},
            "qa": [lvbench_qa(11), lvbench_qa(12, "C", ("reasoning", "temporal grounding"))],
        },
        {
            "key": "keyB",
            "type": "sport",
            "video_info": {"duration_minutes": 0.05, "fps": 4.0, "resolution": {"width": 64, "height": 64}},
            "qa": [lvbench_qa(21, "D", ("event understanding",))],
        },
    ]
    lines = [json.dumps(v) for v in videos] + list(extra_lines)
    (root / "video_info.meta.jsonl").write_text("\n".join(lines) + "\n")
    place(clips[0], root / "videos" / "keyA.mp4")
    place(clips[1], root / "videos" / "keyB.mp4")
    return root


BUILDERS = {
    "videomme": lambda root, clips: write_videomme(root, clips, VIDEOMME_ROWS),
    "videomme_sub": lambda root, clips: write_videomme(root, clips, VIDEOMME_ROWS),
    "mlvu": write_mlvu,
    "longvideobench": write_longvideobench,
    "longvideobench_sub": write_longvideobench,
    "lvbench": write_lvbench,
}
ITEM_COUNTS = {
    "videomme": 3,
    "videomme_sub": 3,
    "mlvu": 3,
    "longvideobench": 3,
    "longvideobench_sub": 3,
    "lvbench": 3,
}


# ------------------------------------------------ official records the official scorers count as-is
# MLVU dev records (MLVU/json/<N>_<task>.json) with the irregularities of official dev items that MLVU's
# choice_bench.py (FlagOpen/FlagEmbedding MLVU/evaluation/multiple_choice_evaluation/choice_bench.py) still
# scores: the answer text repeated among the candidates (1_plotQA 335, 387, 493; 6_anomaly_reco 66;
# 7_topic_reasoning 163), an empty candidate (1_plotQA 23), an answer that matches no candidate. The texts
# are made up; the layout and the kind of defect are the official records'.
MLVU_REPEATED = mlvu_record("a.mp4", answer="red", candidates=["red", "blue", "red", "green"])
MLVU_EMPTY_OPTION = mlvu_record("a.mp4", answer="blue", candidates=["red", "", "blue", "green"])
MLVU_NO_MATCH = mlvu_record("a.mp4", answer="Blue ", candidates=["red", "Blue", "green", "white"])


def write_mlvu_irregular(root: Path, clips: list[Path]) -> Path:
    """DIR/MLVU with 1_plotQA holding one regular and the three irregular records, 4_count one record."""
    write_mlvu(root, clips)
    records = [mlvu_record("a.mp4"), MLVU_REPEATED, MLVU_EMPTY_OPTION, MLVU_NO_MATCH]
    (root / "MLVU" / "json" / "1_plotQA.json").write_text(json.dumps(records))
    return root


# LVBench as its repository lays it out after its own steps (THUDM/LVBench data/README.md and
# scripts/download.sh): data/video_info.meta.jsonl, and scripts/videos/<shard>/<number>.mp4 written by
# video2dataset --output_format files, each with a .json holding the sample's "url", "key" and "status".
def write_lvbench_repository(root: Path, clips: list[Path]) -> Path:
    """The LVBench repository root: keyA downloaded as 000000005 with a .json naming it (the .json, not
    the number, says which video it is), keyB as 000000001 (its line's number) without a .json, and keyC
    listed in the metadata but never downloaded."""
    flat = write_lvbench(root / "flat", clips)
    (root / "data").mkdir(parents=True, exist_ok=True)
    meta = (flat / "video_info.meta.jsonl").read_text().splitlines()
    extra = {"key": "keyC", "type": "news", "video_info": {}, "qa": [lvbench_qa(31, "B")]}
    (root / "data" / "video_info.meta.jsonl").write_text("\n".join([*meta, json.dumps(extra)]) + "\n")
    shard = root / "scripts" / "videos" / "00000"
    place(clips[0], shard / "000000005.mp4")
    sample = {"url": "https://www.youtube.com/watch?v=keyA", "key": "000000005", "status": "success"}
    (shard / "000000005.json").write_text(json.dumps(sample))
    place(clips[1], shard / "000000001.mp4")
    shutil.rmtree(flat)
    return root
