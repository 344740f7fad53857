"""A results directory: run.json (settings), items.jsonl (append-only, one line per item) and summary.json.

A line is written and flushed as soon as an item finishes, so an interrupted run loses at most the item
in flight; a torn last line is dropped when the directory is reopened. When an id appears twice (an error
retried), the later line wins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.eval.settings import RunSettings

RUN_FILE = "run.json"
ITEMS_FILE = "items.jsonl"
SUMMARY_FILE = "summary.json"


class ResultsError(Exception):
    """A results directory that cannot be used as asked (other settings, unreadable files)."""


def read_items(directory: Path) -> dict[str, dict[str, Any]]:
    """The last line per item id in `directory/items.jsonl`, in first-seen order; a torn line is skipped."""
    path = directory / ITEMS_FILE
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the torn tail of an interrupted write
        if isinstance(record, dict) and "id" in record:
            records[str(record["id"])] = record
    return records


def read_settings(directory: Path) -> RunSettings:
    """The settings a results directory was produced with."""
    path = directory / RUN_FILE
    if not path.is_file():
        raise ResultsError(f"{directory} is not a results directory (no {RUN_FILE})")
    try:
        return RunSettings.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ResultsError(f"{path} is unreadable: {str(exc).splitlines()[0]}") from None


class ResultStore:
    """Appends item lines to a results directory created for, or resumed with, the same settings."""

    def __init__(self, directory: Path, settings: RunSettings) -> None:
        """Check `directory` against `settings`; nothing is written until the first line or summary."""
        self.directory = directory
        self.settings = settings
        if (directory / RUN_FILE).is_file():
            differences = settings.differences(read_settings(directory))
            if differences:
                raise ResultsError(
                    f"{directory} holds a run with other settings ({'; '.join(differences)}); "
                    "use another --out or the same settings"
                )
            self._repair_tail()

    def _create(self) -> None:
        """Make the directory and its run.json on first write (a run that fails to start leaves none)."""
        run = self.directory / RUN_FILE
        if not run.is_file():
            self.directory.mkdir(parents=True, exist_ok=True)
            run.write_text(self.settings.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @property
    def items_path(self) -> Path:
        return self.directory / ITEMS_FILE

    def _repair_tail(self) -> None:
        """Cut a torn last line (no newline) so the next append starts on a line of its own."""
        path = self.items_path
        if not path.is_file() or path.stat().st_size == 0:
            return
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])

    def records(self) -> dict[str, dict[str, Any]]:
        return read_items(self.directory)

    def append(self, record: dict[str, Any]) -> None:
        """Write one item line and flush it to disk."""
        self._create()
        with self.items_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_summary(self, summary: dict[str, Any]) -> Path:
        self._create()
        path = self.directory / SUMMARY_FILE
        path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path
