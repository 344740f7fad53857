"""LVBench (THUDM/LVBench release): 1,549 questions on 103 hour-long videos.

Layout under DIR:

    video_info.meta.jsonl   one line per video: {"key", "type", "video_info", "qa": [...]}
    <key>.mp4               videos named by their YouTube key, directly in DIR or in videos/,
                            all_videos/, video/ or data/ (the first that has it)

Each qa record: uid, question (the stem, then "\\n(A) ..." option lines), answer ("A".."D"),
question_type (a list: a question may count in several), time_reference. Scored as the official
`compute_accuracy`: overall, and per question type counting each of an item's types.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agent.eval.items import AnnotationError, BadRecord, EvalItem, RecordError, checked, find_video, require

ANNOTATION = "video_info.meta.jsonl"
VIDEO_DIRS = ("", "videos", "all_videos", "video", "data")
CATEGORIES = ("question_type", "video_type")
MAX_NEW_TOKENS = 1  # lvbench.yaml generation_kwargs
# The paper's lmms-eval fork (eval/lmms_eval/tasks/lvbench): "(A)" becomes "A" in the question text.
INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
_OPTION_LINE = re.compile(r"^\(([A-Z])\)\s*(.*)$")


def load(root: Path) -> list[EvalItem | BadRecord]:
    """Every question of every video line, in file order; bad lines and records become `BadRecord`s."""
    path = root / ANNOTATION
    if not path.is_file():
        raise AnnotationError(f"no LVBench annotation in {root}: expected {ANNOTATION}")
    items: list[EvalItem | BadRecord] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            video = json.loads(line)
            key = str(require(video, "key", str))
            qas = require(video, "qa", list)
        except (json.JSONDecodeError, RecordError, TypeError) as exc:
            items.append(BadRecord(f"line{number}", f"malformed annotation line {number}: {_reason(exc)}"))
            continue
        for index, qa in enumerate(qas):  # type: ignore[union-attr]
            uid = qa.get("uid") if isinstance(qa, dict) else None
            rid = f"{key}/{index}" if uid is None else str(uid)
            try:
                items.append(_item(root, key, video, qa, rid))
            except RecordError as exc:
                items.append(BadRecord(rid, f"malformed annotation record: {exc}", _categories(video, qa)))
    return items


def _reason(exc: Exception) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


def _item(root: Path, key: str, video: dict[str, Any], qa: Any, rid: str) -> EvalItem:
    if not isinstance(qa, dict):
        raise RecordError(f"the qa record is {type(qa).__name__}, expected an object")
    stem, options = split_question(str(require(qa, "question", str)))
    return checked(
        EvalItem(
            id=rid,
            video=_video(root, key),
            question=stem,
            options=options,
            answer=str(require(qa, "answer", str)).strip().strip("()").upper(),
            categories=_categories(video, qa),
        )
    )


def split_question(text: str) -> tuple[str, dict[str, str]]:
    """The stem and the "(A) ..." option lines of an LVBench question."""
    stem: list[str] = []
    options: dict[str, str] = {}
    for line in text.strip().split("\n"):
        match = _OPTION_LINE.match(line.strip())
        if match:
            options[match.group(1)] = match.group(2).strip()
        elif options:  # a continuation of the previous option's text
            last = list(options)[-1]
            options[last] = f"{options[last]} {line.strip()}".strip()
        else:
            stem.append(line)
    if not options:
        raise RecordError("the question has no '(A) ...' option lines")
    return "\n".join(stem).strip(), options


def _video(root: Path, key: str) -> Path:
    for folder in VIDEO_DIRS:
        path = find_video(root / folder, key)
        if path.is_file():
            return path
    return root / f"{key}.mp4"


def _categories(video: dict[str, Any], qa: Any) -> dict[str, str | tuple[str, ...]]:
    cats: dict[str, str | tuple[str, ...]] = {}
    types = qa.get("question_type") if isinstance(qa, dict) else None
    if isinstance(types, list) and types:
        cats["question_type"] = tuple(str(t) for t in types)
    elif isinstance(types, str):
        cats["question_type"] = types
    if video.get("type") is not None:
        cats["video_type"] = str(video["type"])
    return cats


def prompt(item: EvalItem, subtitles: list[str] | None = None) -> str:
    """The fork's LVBench prompt: instruction, stem, "A option" lines, post-prompt."""
    options = "\n".join(f"{k} {v}" for k, v in item.options.items())
    return INSTRUCTION + "\n" + item.question + "\n" + options + "\n" + POST_PROMPT
