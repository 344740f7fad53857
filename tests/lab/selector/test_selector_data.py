"""Selector data sources: world clips by index, and LLaVA-Video-178K-style annotation files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lab.selector.data import AnnotatedVideos, Annotation, WorldClips, read_annotations, write_annotations
from streams.synth import write_mp4

SAMPLE = [
    {
        "video": "clips/a.mp4",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is the man holding?"},
            {"from": "gpt", "value": "A red cup."},
            {"from": "human", "value": "Where is he?"},
            {"from": "gpt", "value": "In a kitchen."},
        ],
    },
    {"video": "/data/b.mp4", "conversations": [{"from": "human", "value": "<video>\nHow many birds?"}]},
]


def test_the_reader_takes_the_first_question_of_each_conversation(tmp_path: Path):
    (tmp_path / "ann.json").write_text(json.dumps(SAMPLE))
    items = read_annotations(tmp_path / "ann.json")
    assert items == [
        Annotation(tmp_path / "clips/a.mp4", "What is the man holding?", "A red cup."),
        Annotation(Path("/data/b.mp4"), "How many birds?", None),
    ]


def test_the_reader_can_keep_every_question(tmp_path: Path):
    (tmp_path / "ann.json").write_text(json.dumps(SAMPLE))
    items = read_annotations(tmp_path / "ann.json", first_only=False)
    assert [a.question for a in items] == ["What is the man holding?", "Where is he?", "How many birds?"]


def test_the_reader_accepts_json_lines_and_a_video_root(tmp_path: Path):
    (tmp_path / "ann.jsonl").write_text("\n".join(json.dumps(e) for e in SAMPLE) + "\n")
    items = read_annotations(tmp_path / "ann.jsonl", video_root=Path("/videos"))
    assert [a.video for a in items] == [Path("/videos/clips/a.mp4"), Path("/data/b.mp4")]


def test_an_entry_without_conversations_is_named_in_the_error(tmp_path: Path):
    (tmp_path / "ann.json").write_text(json.dumps([SAMPLE[0], {"video": "x.mp4"}]))
    with pytest.raises(ValueError, match="entry 1 needs 'video' and 'conversations'"):
        read_annotations(tmp_path / "ann.json")


def test_written_annotations_read_back(tmp_path: Path):
    items = [Annotation(tmp_path / "v" / "a.mp4", "what color is the ring ?", "red")]
    write_annotations(tmp_path / "ann.json", items)
    assert json.loads((tmp_path / "ann.json").read_text())[0]["video"] == "v/a.mp4"
    assert read_annotations(tmp_path / "ann.json") == items


def test_annotated_videos_sample_frames_from_the_file(tmp_path: Path):
    frames = np.zeros((10, 56, 56, 3), dtype=np.uint8)
    write_mp4(iter(frames), tmp_path / "a.mp4", 2.0)
    source = AnnotatedVideos((Annotation(tmp_path / "a.mp4", "what ?", None),), frames=4)
    example = source[0]
    assert example.frames.shape == (4, 56, 56, 3) and example.question == "what ?"


def test_world_clips_are_a_pure_function_of_the_index():
    source = WorldClips(count=5, seed=3, lengths=(8, 16))
    a, b = source[2], source[2]
    assert np.array_equal(a.frames, b.frames) and a.question == b.question
    assert {len(source[i].frames) for i in range(5)} <= {8, 16}


def test_world_clip_indices_are_bounded():
    with pytest.raises(IndexError):
        WorldClips(count=2)[2]
