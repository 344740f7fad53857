"""VideoMME (lmms-lab/Video-MME release): 2,700 questions on 900 videos, with and without subtitles.

Layout under DIR (the Hugging Face dataset after unzipping its archives):

    videomme/test-00000-of-00001.parquet   one row per question (a .json or .jsonl list of the same
                                           records is read too, e.g. a `datasets` export)
    data/<videoID>.mp4                     videos (.MP4 and .mkv also found, as lmms-eval does)
    subtitle/<videoID>.srt                 subtitles, for the "with subtitles" variant

Row fields: question_id, videoID, duration (short|medium|long), domain, sub_category, task_type,
question, options (["A. ...", "B. ...", ...]), answer ("A".."D").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from lab.eval.items import (
    AnnotationError,
    BadRecord,
    EvalItem,
    RecordError,
    checked,
    find_video,
    require,
)
from lab.eval.subtitles import lines_at_frames, load_srt

CATEGORIES = ("duration", "domain", "sub_category", "task_type")
MAX_NEW_TOKENS = 1  # videomme.yaml generation_kwargs
# The paper's lmms-eval fork (eval/lmms_eval/tasks/videomme): the same instruction with and without
# subtitles, then the yaml's post_prompt (no subtitles) or "The best answer is:" (subtitles).
INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
SUBTITLE_HEADER = "This video's subtitles are listed below: \n"
NO_SUBTITLES = "No subtitles available"
_OPTION = re.compile(r"^\s*([A-Z])[.)]\s*(.*)$", re.DOTALL)


def annotation_file(root: Path) -> Path:
    """The release's parquet, else a JSON/JSONL export of the same rows."""
    for folder in (root / "videomme", root):
        for pattern in ("test-*.parquet", "*.parquet", "*.jsonl", "*.json"):
            found = sorted(folder.glob(pattern))
            if found:
                return found[0]
    raise AnnotationError(
        f"no VideoMME annotation in {root}: expected videomme/test-00000-of-00001.parquet "
        "(or a .json/.jsonl export of its rows)"
    )


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of the annotation file as plain dicts."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # optional: only the parquet release needs it; JSON exports do not
        except ImportError:
            raise AnnotationError(
                f"reading {path.name} needs pyarrow (pip install pyarrow), or convert it to JSON lines"
            ) from None
        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [_json_line(line, i) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise AnnotationError(f"{path} holds {type(rows).__name__}, expected a list of question records")
    return rows


def _json_line(line: str, number: int) -> dict[str, Any]:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return {"_error": f"line {number} is not JSON: {exc.msg}", "_line": number}


def load(root: Path, *, subtitles: bool = False) -> list[EvalItem | BadRecord]:
    """Every question in the annotation file, in file order; bad rows become `BadRecord`s."""
    path = annotation_file(root)
    items: list[EvalItem | BadRecord] = []
    for index, row in enumerate(read_rows(path)):
        rid = str(row.get("question_id") or f"row{index}")
        try:
            if "_error" in row:
                raise RecordError(row["_error"])
            items.append(_item(root, row, rid, subtitles=subtitles))
        except RecordError as exc:
            items.append(BadRecord(rid, f"malformed annotation record: {exc}", _categories(row)))
    return items


def _item(root: Path, row: dict[str, Any], rid: str, *, subtitles: bool) -> EvalItem:
    video_id = str(require(row, "videoID", str))
    raw = require(row, "options", (list, tuple))
    options: dict[str, str] = {}
    for option in raw:  # type: ignore[union-attr]
        match = _OPTION.match(str(option))
        if match is None:
            raise RecordError(f"option {option!r} does not start with a letter and a period")
        options[match.group(1)] = match.group(2).strip()
    return checked(
        EvalItem(
            id=rid,
            video=find_video(root / "data", video_id),
            question=str(require(row, "question", str)).strip(),
            options=options,
            answer=str(require(row, "answer", str)).strip().upper(),
            categories=_categories(row),
            subtitles=root / "subtitle" / f"{video_id}.srt" if subtitles else None,
        )
    )


def _categories(row: dict[str, Any]) -> dict[str, str | tuple[str, ...]]:
    return {key: str(row[key]) for key in CATEGORIES if row.get(key) is not None}


def subtitle_lines(item: EvalItem, times: np.ndarray) -> list[str]:
    """Lines on screen at the sampled frames; a missing .srt means no subtitles (as lmms-eval)."""
    if item.subtitles is None or not item.subtitles.is_file():
        return []
    return lines_at_frames(load_srt(item.subtitles), times)


def prompt(item: EvalItem, subtitles: list[str] | None) -> str:
    """The lmms-eval VideoMME prompt; `subtitles` (shown lines) selects the subtitle variant."""
    body = INSTRUCTION + "\n" + item.question + "\n" + "\n".join(f"{k}. {v}" for k, v in item.options.items())
    if subtitles is None:
        return body + "\n" + POST_PROMPT
    shown = "\n".join(subtitles) if subtitles else NO_SUBTITLES
    return SUBTITLE_HEADER + shown + "\n" + body + "\n" + "The best answer is:"
