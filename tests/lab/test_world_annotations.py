"""World videos written as selector annotations: files on disk, one question each, answers known."""

from __future__ import annotations

from pathlib import Path

from lab.world_annotations import world_video_annotations


def test_world_videos_become_annotations_with_their_questions_and_answers(tmp_path: Path):
    items = world_video_annotations(tmp_path, count=2, frames=8, size=56, seed=3, kinds=("color", "count"))
    assert len(items) == 2
    assert all(a.video.is_file() and a.video.parent == tmp_path for a in items)
    assert all(a.question and a.answer for a in items)
