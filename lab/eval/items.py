"""The common item every benchmark reader produces, and the record a reader could not parse."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

# A category value is one label, or several for multi-label benchmarks (LVBench question types).
Category = str | tuple[str, ...]
LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class EvalItem:
    """One multiple-choice question about one video.

    Attributes:
        id: the benchmark's own question id (unique within the benchmark).
        video: the video file the question is about (may not exist: reported per item).
        question: the question stem, without its options.
        options: option letter -> option text, in the benchmark's order.
        answer: the correct letter; None where the official scorer's gold letter is no option (an MLVU
            answer text that matches no candidate): the item is answered and always counts as wrong.
        categories: the benchmark's reporting categories, e.g. {"duration": "long", "task_type": "OCR"}.
        subtitles: the item's subtitle file (subtitle variants only); parsed when the prompt is built.
        subtitle_offset: seconds subtracted from subtitle times to reach video time (LongVideoBench).
        note: how an irregular official record was scored (written to its items.jsonl line and the summary).
        video_hint: where the video is expected and how to get it there, added to a "video not found" error.
    """

    id: str
    video: Path
    question: str
    options: dict[str, str]
    answer: str | None
    categories: dict[str, Category] = field(default_factory=dict)
    subtitles: Path | None = None
    subtitle_offset: float = 0.0
    note: str | None = None
    video_hint: str | None = None


@dataclass(frozen=True)
class BadRecord:
    """An annotation record that could not become an item; reported as one error line, never fatal."""

    id: str
    message: str
    categories: dict[str, Category] = field(default_factory=dict)


class AnnotationError(Exception):
    """The annotation files themselves are missing or unreadable: nothing can be evaluated."""


class RecordError(ValueError):
    """One annotation record is malformed (raised inside readers, turned into a `BadRecord`)."""


class ItemFailure(Exception):
    """One item could not be answered; recorded as an error line at `stage` and the run goes on.

    Stages: "annotation" (malformed record), "video" (missing or undecodable), "subtitles", "model".
    """

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def lettered(texts: list[str]) -> dict[str, str]:
    """Options keyed A, B, C, ... in order."""
    if len(texts) > len(LETTERS):
        raise RecordError(f"{len(texts)} options is more than the {len(LETTERS)} letters available")
    return {LETTERS[i]: text for i, text in enumerate(texts)}


def checked(item: EvalItem) -> EvalItem:
    """`item` if it is answerable as multiple choice, else a `RecordError` saying what is wrong."""
    if not item.question.strip():
        raise RecordError("the question is empty")
    if len(item.options) < 2:
        raise RecordError(f"expected at least 2 options, got {len(item.options)}")
    if any(not text.strip() for text in item.options.values()):
        raise RecordError("an option is empty")
    if item.answer not in item.options:
        raise RecordError(f"the answer {item.answer!r} is not one of the options {''.join(item.options)}")
    return item


def require(record: dict[str, object], key: str, kind: type | tuple[type, ...]) -> object:
    """`record[key]` if present with the expected type, else a `RecordError` naming the field."""
    if key not in record or record[key] is None:
        raise RecordError(f"the record has no {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        raise RecordError(f"{key!r} is {type(value).__name__}, expected {_names(kind)}")
    return value


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def find_video(directory: Path, stem: str, suffixes: tuple[str, ...] = (".mp4", ".MP4", ".mkv")) -> Path:
    """The first existing `directory/stem+suffix`, else the first candidate (reported missing later)."""
    candidates = [directory / f"{stem}{suffix}" for suffix in suffixes]
    return next((path for path in candidates if path.is_file()), candidates[0])


def unique_ids(items: list[EvalItem | BadRecord]) -> list[EvalItem | BadRecord]:
    """`items` with each repeat of an id turned into a `BadRecord` "<id>~<n>" (resume is keyed by id)."""
    seen: dict[str, int] = {}
    out: list[EvalItem | BadRecord] = []
    for item in items:
        n = seen.get(item.id, 0)
        seen[item.id] = n + 1
        if n == 0:
            out.append(item)
        else:
            message = f"duplicate id {item.id!r} (occurrence {n + 1}); only the first is evaluated"
            out.append(BadRecord(f"{item.id}~{n + 1}", message, item.categories))
    return out
