"""JSON Schemas of the MQTT messages, made from the models: `python -m agent.mqtt.schemas --write DIR`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from agent.mqtt.messages import (
    AnswerMessage,
    AskRequest,
    ErrorMessage,
    StreamStatus,
    WatchEvent,
    WatchList,
    WatchRemove,
    WatchSpec,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# File name -> (model, whether the agent reads it (validation schema) or writes it (serialization schema)).
MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "ask-request.json": (AskRequest, "validation"),
    "answer.json": (AnswerMessage, "serialization"),
    "error.json": (ErrorMessage, "serialization"),
    "stream-status.json": (StreamStatus, "serialization"),
    "watch-add.json": (WatchSpec, "validation"),
    "watch-remove.json": (WatchRemove, "validation"),
    "watch-list.json": (WatchList, "serialization"),
    "watch-event.json": (WatchEvent, "serialization"),
}


def render() -> dict[str, str]:
    """Every schema file's name and its text (sorted keys, two-space indent, final newline)."""
    files = {}
    for name, (model, mode) in MODELS.items():
        schema = {"$schema": SCHEMA_DIALECT, **model.model_json_schema(mode=mode)}  # type: ignore[arg-type]
        files[name] = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return files


def write(directory: Path) -> list[Path]:
    """Write every schema into `directory` (created if missing) and return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path) -> list[str]:
    """Names of the schema files in `directory` that are missing or differ from the models."""
    out = []
    for name, text in render().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Write the schemas (`--write DIR`) or check them (`--check DIR`: exit 1 when stale)."""
    parser = argparse.ArgumentParser(prog="python -m agent.mqtt.schemas", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, metavar="DIR", help="write the schema files into DIR")
    group.add_argument("--check", type=Path, metavar="DIR", help="exit 1 if DIR's schema files are stale")
    args = parser.parse_args(argv)
    if args.write is not None:
        for path in write(args.write):
            print(path)
        return 0
    names = stale(args.check)
    for name in names:
        print(f"stale: {args.check / name}", file=sys.stderr)
    return 1 if names else 0


if __name__ == "__main__":
    sys.exit(main())
