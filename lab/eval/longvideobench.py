"""LongVideoBench validation set (longvideobench/LongVideoBench release), with or without subtitles.

Layout under DIR (after `cat videos.tar.part.* | tar x` and extracting subtitles.tar):

    lvb_val.json              a list of question records
    videos/<video_path>       videos
    subtitles/<subtitle_path> subtitles (JSON), for the subtitle variant (InternVL's rows in the paper)

Record fields: id, video_id, video_path, subtitle_path, question, candidates (option texts, 3 to 5),
correct_choice (0-based index), duration_group (15|60|600|3600 s), question_category, duration,
starting_timestamp_for_subtitles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lab.eval.items import AnnotationError, BadRecord, EvalItem, RecordError, checked, lettered, require
from lab.eval.subtitles import lines_at_frames, load_lvb_json

ANNOTATION = "lvb_val.json"
CATEGORIES = ("duration_group", "question_category")
MAX_NEW_TOKENS = 1  # longvideobench_val_v.yaml generation_kwargs
POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"


def load(root: Path, *, subtitles: bool = False) -> list[EvalItem | BadRecord]:
    """Every question of lvb_val.json in file order; bad records become `BadRecord`s."""
    path = root / ANNOTATION
    if not path.is_file():
        raise AnnotationError(f"no LongVideoBench annotation in {root}: expected {ANNOTATION}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path} is not JSON: {exc}") from None
    items: list[EvalItem | BadRecord] = []
    for index, record in enumerate(records):
        rid = str(record.get("id") or f"record{index}") if isinstance(record, dict) else f"record{index}"
        try:
            items.append(_item(root, record, rid, subtitles=subtitles))
        except RecordError as exc:
            cats = _categories(record) if isinstance(record, dict) else {}
            items.append(BadRecord(rid, f"malformed annotation record: {exc}", cats))
    return items


def _item(root: Path, record: Any, rid: str, *, subtitles: bool) -> EvalItem:
    if not isinstance(record, dict):
        raise RecordError(f"the record is {type(record).__name__}, expected an object")
    options = lettered([str(c) for c in require(record, "candidates", list)])  # type: ignore[union-attr]
    choice = require(record, "correct_choice", int)
    if not 0 <= choice < len(options):  # type: ignore[operator]
        raise RecordError(f"correct_choice {choice} is outside 0..{len(options) - 1}")
    subtitle_path = record.get("subtitle_path")
    return checked(
        EvalItem(
            id=rid,
            video=root / "videos" / str(require(record, "video_path", str)),
            question=str(require(record, "question", str)).strip(),
            options=options,
            answer=list(options)[choice],  # type: ignore[index]
            categories=_categories(record),
            subtitles=root / "subtitles" / str(subtitle_path) if subtitles and subtitle_path else None,
            subtitle_offset=float(record.get("starting_timestamp_for_subtitles") or 0.0),
        )
    )


def _categories(record: dict[str, Any]) -> dict[str, str | tuple[str, ...]]:
    return {key: str(record[key]) for key in CATEGORIES if record.get(key) is not None}


def subtitle_lines(item: EvalItem, times: np.ndarray) -> list[str]:
    """Lines covering a sampled frame, by LongVideoBench's own interleaving rule."""
    if item.subtitles is None:
        return []
    if not item.subtitles.is_file():
        raise RecordError(f"subtitle file not found: {item.subtitles}")
    lines = load_lvb_json(item.subtitles, offset=item.subtitle_offset)
    return lines_at_frames(lines, times, widen_short=True)


def prompt(item: EvalItem, subtitles: list[str] | None) -> str:
    """longvideobench_val_v(_sub) prompt: [subtitles], question, "A. option" lines, instruction."""
    body = item.question + "\n" + "\n".join(f"{k}. {v}" for k, v in item.options.items())
    if subtitles is None:
        return body + "\n" + POST_PROMPT
    return "\n".join(subtitles) + "\n" + body + "\n" + POST_PROMPT
