"""Subtitle files of the subtitle variants (VideoMME .srt, LongVideoBench .json) and the lines shown.

Both official evaluations show only the lines that are on screen at a sampled frame: VideoMME (lmms-eval)
keeps a line when a sampled frame index falls in [start, end); LongVideoBench keeps a line when a frame
time falls strictly inside it, widening lines shorter than a second to one second around their middle.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.eval.items import RecordError

_TAG = re.compile(r"<[^>]+>")
_SRT_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)")


@dataclass(frozen=True)
class SubtitleLine:
    """One subtitle: its time span in seconds of video time and its text."""

    start: float
    end: float
    text: str


def load_srt(path: Path) -> list[SubtitleLine]:
    """Lines of an .srt file; markup such as VideoMME's `<font ...>` is removed."""
    lines: list[SubtitleLine] = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")):
        rows = [row for row in block.strip().split("\n") if row.strip()]
        timing = next((i for i, row in enumerate(rows) if "-->" in row), None)
        if timing is None:
            continue
        start, end = (_srt_seconds(part) for part in rows[timing].split("-->"))
        text = " ".join(_TAG.sub("", row).strip() for row in rows[timing + 1 :]).strip()
        if text:
            lines.append(SubtitleLine(start, end, text))
    return lines


def _srt_seconds(stamp: str) -> float:
    match = _SRT_TIME.search(stamp)
    if match is None:
        raise RecordError(f"unreadable subtitle time {stamp.strip()!r}")
    h, m, s, ms = match.groups()
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 10 ** len(ms)


def load_lvb_json(path: Path, *, offset: float) -> list[SubtitleLine]:
    """LongVideoBench subtitles: `{"start", "end", "line"}` ("HH:MM:SS.fff") or `{"timestamp", "text"}`.

    Times are shifted by `-offset` (the record's `starting_timestamp_for_subtitles`); an open-ended
    `timestamp` end (null) runs to the end of the video.
    """
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise RecordError(f"{path.name} holds {type(records).__name__}, expected a list of subtitle lines")
    lines = []
    for record in records:
        if "timestamp" in record:
            start, end = record["timestamp"]
            end = end if isinstance(end, int | float) else math.inf
            text = record.get("text", "")
        else:
            start, end = _clock_seconds(record["start"]), _clock_seconds(record["end"])
            text = record.get("line", "")
        lines.append(SubtitleLine(float(start) - offset, float(end) - offset, str(text).strip()))
    return [line for line in lines if line.text]


def _clock_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def lines_at_frames(lines: list[SubtitleLine], times: np.ndarray, *, widen_short: bool = False) -> list[str]:
    """Texts of the lines on screen at any of the frame `times` (seconds), in subtitle order.

    `widen_short` applies LongVideoBench's rule (lines under one second count as one second long, and a
    frame must fall strictly inside); otherwise VideoMME's [start, end).
    """
    shown = []
    for line in lines:
        start, end = line.start, line.end
        if widen_short:
            if end - start < 1:
                middle = (start + end) / 2
                start, end = middle - 0.5, middle + 0.5
            on = bool(np.any((times > start) & (times < end)))
        else:
            on = bool(np.any((times >= start) & (times < end)))
        if on:
            shown.append(line.text)
    return shown
