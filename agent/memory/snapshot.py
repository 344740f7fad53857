"""The local backend's snapshot: one safetensors file (raw tensors plus JSON metadata, never pickle)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from agent.memory.chunk import lite_rows, with_lite
from agent.memory.codec import Layout
from agent.memory.errors import CorruptEntryError
from agent.memory.rows import Rows
from flexselect.types import VisualTokens

logger = logging.getLogger(__name__)

FORMAT = "fsa-memory-snapshot/1"
_TOKEN_FIELDS = ("embeds", "frame", "time", "grid", "kind", "token_id")
_SCORE_FIELDS = ("attention", "redundancy", "retention", "row")


@dataclass(frozen=True)
class StreamSnapshot:
    """One stream's persistent state: layout, counters and retained rows with their chunk numbers."""

    stream_id: str
    layout: Layout
    head: float
    next_chunk: int
    appended: int
    evicted: int
    rows: Rows | None
    chunk: torch.Tensor | None


@dataclass(frozen=True)
class Snapshot:
    streams: list[StreamSnapshot]
    appended: int
    evicted: int
    corrupt: int = 0  # streams skipped while loading


def _tensors(i: int, stream: StreamSnapshot) -> dict[str, torch.Tensor]:
    if stream.rows is None or stream.chunk is None or len(stream.rows) == 0:
        return {}
    out = {f"s{i}.{name}": getattr(stream.rows.tokens, name) for name in _TOKEN_FIELDS}
    out |= {f"s{i}.{name}": getattr(stream.rows, name) for name in _SCORE_FIELDS}
    out[f"s{i}.chunk"] = stream.chunk
    if stream.rows.tokens.deepstack is not None:
        out[f"s{i}.deepstack"] = stream.rows.tokens.deepstack
    lite = lite_rows(stream.rows.tokens)
    if lite is not None:
        out[f"s{i}.lite"] = lite
    return {k: v.contiguous() for k, v in out.items()}


def _header(i: int, stream: StreamSnapshot) -> dict[str, object]:
    return {
        "tensors": f"s{i}",
        "stream_id": stream.stream_id,
        "layout": stream.layout.encode(),
        "head": stream.head,
        "next_chunk": stream.next_chunk,
        "appended": stream.appended,
        "evicted": stream.evicted,
    }


def save_snapshot(path: Path, snapshot: Snapshot) -> None:
    """Write `snapshot` to `path` atomically (temporary file, fsync, rename)."""
    tensors: dict[str, torch.Tensor] = {}
    headers = []
    for i, stream in enumerate(snapshot.streams):
        tensors |= _tensors(i, stream)
        headers.append(_header(i, stream))
    meta = {"appended": snapshot.appended, "evicted": snapshot.evicted, "streams": headers}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "memory": json.dumps(meta)})
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _stream(header: dict, tensors: dict[str, torch.Tensor]) -> StreamSnapshot:
    layout = Layout.decode(str(header["layout"]))
    prefix = f"{header['tensors']}."
    mine = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    rows = chunk = None
    if mine:
        try:
            tokens = VisualTokens(
                **{name: mine[name] for name in _TOKEN_FIELDS},
                deepstack=mine.get("deepstack"),
                seconds_per_step=layout.seconds_per_step,
            )
            tokens = with_lite(tokens, mine.get("lite"))
            rows = Rows(tokens, mine["attention"], mine["redundancy"], mine["retention"], mine["row"])
            chunk = mine["chunk"]
        except (KeyError, ValueError) as exc:
            raise CorruptEntryError(f"snapshot stream {header.get('stream_id')!r}: {exc}") from exc
        if Layout.of(tokens) != layout or chunk.shape != (len(tokens),):
            raise CorruptEntryError(f"snapshot stream {header.get('stream_id')!r} does not match its layout")
    return StreamSnapshot(
        stream_id=str(header["stream_id"]),
        layout=layout,
        head=float(header["head"]),
        next_chunk=int(header["next_chunk"]),
        appended=int(header["appended"]),
        evicted=int(header["evicted"]),
        rows=rows,
        chunk=chunk,
    )


def load_snapshot(path: Path) -> Snapshot:
    """Read a snapshot; streams that do not decode are logged, counted and skipped.

    Raises:
        CorruptEntryError: the file is not a snapshot of this format.
    """
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptEntryError(f"snapshot {path} does not load: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CorruptEntryError(f"snapshot {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    try:
        body = json.loads(meta["memory"])
        headers = list(body["streams"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptEntryError(f"snapshot {path} metadata does not parse: {exc}") from exc
    streams, corrupt = [], 0
    for header in headers:
        try:
            streams.append(_stream(header, tensors))
        except (CorruptEntryError, KeyError, TypeError, ValueError) as exc:
            corrupt += 1
            logger.error("skipping a corrupt stream in snapshot %s: %s", path, exc)
    return Snapshot(streams, int(body.get("appended", 0)), int(body.get("evicted", 0)), corrupt)
