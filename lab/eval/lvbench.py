"""LVBench (THUDM/LVBench release): 1,549 questions on 103 hour-long videos.

Layout under DIR, either the THUDM/LVBench repository root after its own download steps:

    data/video_info.meta.jsonl        the metadata (data/README.md: from the Hugging Face dataset)
    scripts/videos/00000/000000000.mp4 ...
                                      what scripts/download.sh writes: scripts/save_video_txt.py lists
                                      one YouTube URL per metadata line, video2dataset (--output_format
                                      files) numbers the videos in that order, 10,000 per shard folder,
                                      with a .json beside each holding its "url"

or a flat copy:

    video_info.meta.jsonl   one line per video: {"key", "type", "video_info", "qa": [...]}
    <key>.mp4               videos named by their YouTube key, directly in DIR or in videos/,
                            all_videos/, video/ or data/ (the first that has it)

A key-named file wins; else the numbered file whose .json names the key's URL; else the file numbered as
the key's line (video2dataset's numbering, for a download whose .json files are gone).

Each qa record: uid, question (the stem, then "\\n(A) ..." option lines), answer ("A".."D"),
question_type (a list: a question may count in several), time_reference. Scored as the official
`compute_accuracy`: overall, and per question type counting each of an item's types.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from lab.eval.items import AnnotationError, BadRecord, EvalItem, RecordError, checked, find_video, require

ANNOTATION = "video_info.meta.jsonl"
ANNOTATION_DIRS = ("", "data")  # DIR itself, or the repository root whose data/ holds the metadata
VIDEO_DIRS = ("", "videos", "all_videos", "video", "data")
DOWNLOAD_DIRS = ("scripts/videos", "videos")  # video2dataset's output folder as scripts/download.sh names it
SAMPLES_PER_SHARD = 10_000  # video2dataset's default number_sample_per_shard
CATEGORIES = ("question_type", "video_type")
MAX_NEW_TOKENS = 1  # lvbench.yaml generation_kwargs
# The paper's lmms-eval fork (eval/lmms_eval/tasks/lvbench): "(A)" becomes "A" in the question text.
INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
_OPTION_LINE = re.compile(r"^\(([A-Z])\)\s*(.*)$")


def annotation_file(root: Path) -> Path:
    """DIR/video_info.meta.jsonl, or DIR/data/video_info.meta.jsonl in the official repository."""
    for folder in ANNOTATION_DIRS:
        if (root / folder / ANNOTATION).is_file():
            return root / folder / ANNOTATION
    raise AnnotationError(f"no LVBench annotation in {root}: expected {ANNOTATION} (or data/{ANNOTATION})")


def load(root: Path) -> list[EvalItem | BadRecord]:
    """Every question of every video line, in file order; bad lines and records become `BadRecord`s."""
    path = annotation_file(root)
    items: list[EvalItem | BadRecord] = []
    videos = VideoFinder(root)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            video = json.loads(line)
            if isinstance(video, dict) and "key" in video:
                videos.listed(str(video["key"]), number)
            key = str(require(video, "key", str))
            qas = require(video, "qa", list)
        except (json.JSONDecodeError, RecordError, TypeError) as exc:
            items.append(BadRecord(f"line{number}", f"malformed annotation line {number}: {_reason(exc)}"))
            continue
        for index, qa in enumerate(qas):  # type: ignore[union-attr]
            uid = qa.get("uid") if isinstance(qa, dict) else None
            rid = f"{key}/{index}" if uid is None else str(uid)
            try:
                items.append(_item(videos, key, video, qa, rid))
            except RecordError as exc:
                items.append(BadRecord(rid, f"malformed annotation record: {exc}", _categories(video, qa)))
    return items


class VideoFinder:
    """A key's video: named by the key, or numbered by the official download (scripts/download.sh)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.downloads = [root / folder for folder in DOWNLOAD_DIRS if (root / folder).is_dir()]
        self._by_url = _downloaded(self.downloads)
        self._order: dict[str, tuple[int, int]] = {}  # key -> (position in the download list, line)

    def listed(self, key: str, line: int) -> None:
        """Record that `key`'s metadata line (number `line`) is the next URL save_video_txt.py lists."""
        self._order.setdefault(key, (len(self._order), line))

    def find(self, key: str) -> tuple[Path, str | None]:
        """The video of `key`, or where it was expected and a hint saying how to get it there."""
        for folder in VIDEO_DIRS:
            path = find_video(self.root / folder, key)
            if path.is_file():
                return path, None
        if key in self._by_url:
            return self._by_url[key], None
        position, line = self._order.get(key, (None, None))
        numbered = _numbered(position) if position is not None else None
        for folder in self.downloads:
            path = folder / numbered if numbered else None
            if path and path.is_file() and not path.with_suffix(".json").is_file():
                return path, None
        where = f"{DOWNLOAD_DIRS[0]}/{numbered}" if numbered else f"{DOWNLOAD_DIRS[0]}/<shard>/<number>.mp4"
        hint = (
            f"LVBench video {key}: expected {self.root / 'videos' / (key + '.mp4')}, or the official "
            f"download's {self.root / where} with its .json naming https://www.youtube.com/watch?v={key} "
            f"(the video of metadata line {line}); run scripts/download.sh of the LVBench repository in its "
            "scripts/ folder and pass the repository root as --data, or save the video as <key>.mp4"
        )
        return self.root / "videos" / f"{key}.mp4", hint


def _numbered(position: int) -> str:
    """video2dataset's file for the sample at `position` of its URL list (default shard size and widths)."""
    return f"{position // SAMPLES_PER_SHARD:05d}/{position:09d}.mp4"


def _downloaded(folders: list[Path]) -> dict[str, Path]:
    """YouTube key -> downloaded video, from the .json video2dataset writes beside each file."""
    found: dict[str, Path] = {}
    for folder in folders:
        for meta in sorted(folder.glob("*/*.json")):
            try:
                record = json.loads(meta.read_text(encoding="utf-8"))
                key = parse_qs(urlparse(str(record["url"])).query)["v"][0]
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                continue  # a stats file, or a sample whose download failed without a URL
            video = find_video(meta.parent, meta.stem, (".mp4", ".webm", ".mkv"))
            if video.is_file():
                found.setdefault(key, video)
    return found


def _reason(exc: Exception) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


def _item(videos: VideoFinder, key: str, video: dict[str, Any], qa: Any, rid: str) -> EvalItem:
    if not isinstance(qa, dict):
        raise RecordError(f"the qa record is {type(qa).__name__}, expected an object")
    stem, options = split_question(str(require(qa, "question", str)))
    path, hint = videos.find(key)
    return checked(
        EvalItem(
            id=rid,
            video=path,
            video_hint=hint,
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
