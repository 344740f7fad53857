"""The in-process token memory: the embedded default, optionally snapshotted to one file at close."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import torch

from agent.memory.base import (
    AppendResult,
    AppendStatus,
    MemoryState,
    MemoryStats,
    RetainedLayout,
    RetainedTokens,
    StreamMemoryStats,
)
from agent.memory.chunk import check_stream_id, score_chunk
from agent.memory.codec import META_DTYPE, Layout, decode_records
from agent.memory.config import MemoryConfig
from agent.memory.errors import (
    CorruptEntryError,
    LayoutMismatchError,
    MemoryClosedError,
    RowsGoneError,
    TokenMemoryError,
)
from agent.memory.policy import StreamIndex, bucket_of, plan_global, plan_stream
from agent.memory.rows import Rows, retained_tokens
from agent.memory.rows_read import (
    DEAD_ROW,
    ENTRY_BYTES,
    identity_records,
    pack_identity,
    record_head,
    retained_layout,
    rows_in_process,
)
from agent.memory.scoring import FrameRef, newest_frame
from agent.memory.snapshot import Snapshot, StreamSnapshot, load_snapshot, save_snapshot
from flexselect.types import VisualTokens

logger = logging.getLogger(__name__)
_SCORES = ("attention", "redundancy", "retention")


@dataclass
class _Chunk:
    """A chunk's stored rows; evicted rows are only marked dead until compaction drops them.

    `identity` packs the rows' metadata (`pack_identity`) once, so a question checks its rows with a
    gather; an evicted row's row column is `DEAD_ROW` there, as `alive` is False.
    """

    rows: Rows
    alive: torch.Tensor  # (stored,) bool
    identity: torch.Tensor  # (stored, PACKED_COLUMNS) int64

    @staticmethod
    def of(rows: Rows) -> _Chunk:
        """A chunk of freshly stored rows, all alive."""
        return _Chunk(rows, torch.ones(len(rows), dtype=torch.bool), pack_identity(rows))

    def kill(self, rows: torch.Tensor) -> None:
        """Mark original rows `rows` (ascending, stored) evicted."""
        positions = torch.searchsorted(self.rows.row, rows)
        self.alive[positions] = False
        self.identity[positions, 0] = DEAD_ROW

    def compacted(self) -> _Chunk:
        """The chunk rewritten without its dead rows."""
        alive = self.alive
        return _Chunk(self.rows.select(alive), torch.ones(self.live, dtype=torch.bool), self.identity[alive])

    @property
    def live(self) -> int:
        return int(self.alive.sum())

    def live_rows(self) -> Rows:
        return self.rows if bool(self.alive.all()) else self.rows.select(self.alive)


@dataclass
class _Stream:
    """One stream: its chunks' rows and the eviction index columns over the live ones."""

    layout: Layout
    head: float = -math.inf
    next_chunk: int = 0
    appended: int = 0
    evicted: int = 0
    chunks: dict[int, _Chunk] = field(default_factory=dict)
    chunk_col: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    row_col: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    time_col: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    score_col: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))

    @property
    def tokens(self) -> int:
        return int(self.chunk_col.shape[0])

    def index(self, stream_id: str) -> StreamIndex:
        return StreamIndex(
            stream_id,
            self.head,
            self.layout.width,
            self.chunk_col,
            self.row_col,
            self.time_col,
            self.score_col,
        )

    def add(self, chunk: int, rows: Rows) -> None:
        """Store rows under chunk number `chunk` and index them."""
        self.chunks[chunk] = _Chunk.of(rows)
        self.chunk_col = np.concatenate([self.chunk_col, np.full(len(rows), chunk, np.int64)])
        self.row_col = np.concatenate([self.row_col, rows.row.numpy()])
        self.time_col = np.concatenate([self.time_col, rows.tokens.time.numpy()])
        self.score_col = np.concatenate([self.score_col, rows.retention.numpy()])
        if len(rows):
            self.head = max(self.head, float(rows.tokens.time.max()))

    def evict(self, positions: np.ndarray, compact_fraction: float) -> int:
        """Drop the tokens at index `positions`; a chunk is rewritten once `compact_fraction` of it died."""
        if positions.size == 0:
            return 0
        order = positions[np.argsort(self.chunk_col[positions], kind="stable")]
        numbers, starts = np.unique(self.chunk_col[order], return_index=True)
        for number, rows in zip(numbers.tolist(), np.split(self.row_col[order], starts[1:]), strict=True):
            chunk = self.chunks[number]
            chunk.kill(torch.from_numpy(rows))
            live, stored = chunk.live, len(chunk.rows)
            if live == 0:
                del self.chunks[number]
            elif stored - live >= compact_fraction * stored:
                self.chunks[number] = chunk.compacted()
        keep = np.ones(self.tokens, dtype=bool)
        keep[positions] = False
        self.chunk_col, self.row_col = self.chunk_col[keep], self.row_col[keep]
        self.time_col, self.score_col = self.time_col[keep], self.score_col[keep]
        self.evicted += int(positions.size)
        return int(positions.size)

    def live_parts(self) -> list[tuple[int, Rows]]:
        """(chunk number, live rows) of every chunk, in chunk order."""
        return [(number, chunk.live_rows()) for number, chunk in sorted(self.chunks.items())]

    def read(self, stream_id: str, since: float | None, until: float | None) -> RetainedTokens:
        parts = [(c, rows) for c, rows in self.live_parts() if _overlaps(rows, since, until)]
        if not parts:
            empty = decode_records(b"", self.layout)
            return retained_tokens(stream_id, empty, torch.empty(0, dtype=torch.int64), since, until)
        rows = Rows.concat([rows for _, rows in parts])
        chunk = torch.cat([torch.full((len(rows),), c, dtype=torch.int64) for c, rows in parts])
        return retained_tokens(stream_id, rows, chunk, since, until)

    def read_layout(self, stream_id: str, since: float | None, until: float | None) -> RetainedLayout:
        """`read` without embeddings: metadata records of the live rows, their chunks and slots."""
        parts = [(n, c) for n, c in sorted(self.chunks.items()) if _overlaps(c.rows, since, until)]
        if parts:
            meta, chunk, slot = _live_records(parts)
        else:
            meta, chunk, slot = np.empty(0, META_DTYPE), np.empty(0, np.int64), np.empty(0, np.int64)
        return retained_layout(stream_id, self.layout, meta, chunk, slot, since, until)

    def stats(self, stream_id: str, bucket_seconds: float) -> StreamMemoryStats:
        buckets, counts = np.unique(bucket_of(self.time_col, bucket_seconds), return_counts=True)
        return StreamMemoryStats(
            stream_id=stream_id,
            tokens=self.tokens,
            bytes=self.tokens * self.layout.width,
            chunks=len(self.chunks),
            appended=self.appended,
            evicted=self.evicted,
            first_time=float(self.time_col.min()) if self.tokens else None,
            last_time=float(self.time_col.max()) if self.tokens else None,
            head_time=None if self.head == -math.inf else self.head,
            buckets=dict(zip(buckets.tolist(), counts.tolist(), strict=True)),
        )


def _live_records(parts: list[tuple[int, _Chunk]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(`META_DTYPE` records, chunk numbers, slots) of the live rows of chunks `parts` (number, chunk),
    from their packed identities concatenated once: no per-chunk record arrays."""
    stored = torch.tensor([len(c.alive) for _, c in parts], dtype=torch.int64)
    live = torch.nonzero(torch.cat([c.alive for _, c in parts])).flatten()
    first = torch.repeat_interleave(torch.cumsum(stored, 0) - stored, stored).index_select(0, live)
    chunk = torch.repeat_interleave(torch.tensor([n for n, _ in parts]), stored).index_select(0, live)
    identity = torch.cat([c.identity for _, c in parts]).index_select(0, live)
    scores = [torch.cat([getattr(c.rows, s) for _, c in parts]).index_select(0, live) for s in _SCORES]
    return identity_records(identity, *scores), chunk.numpy(), (live - first).numpy()


def _overlaps(rows: Rows, since: float | None, until: float | None) -> bool:
    time = rows.tokens.time
    return (since is None or float(time.max()) >= since) and (until is None or float(time.min()) <= until)


class LocalTokenMemory:
    """`TokenMemory` held in this process; budgets and eviction follow `agent.memory.policy` exactly.

    Every method runs to completion without awaiting in between, so concurrent tasks see each append as
    atomic. With `snapshot_path` set, `close()` writes a snapshot and `connect()` loads it.
    """

    def __init__(self, config: MemoryConfig) -> None:
        self._config = config
        self._retention = config.retention
        self._state = MemoryState.CLOSED
        self._streams: dict[str, _Stream] = {}
        self._frames: dict[str, FrameRef | None] = {}
        self._appended = 0
        self._evicted = 0
        self._corrupt = 0
        self._bytes_read = 0

    @property
    def state(self) -> MemoryState:
        return self._state

    @property
    def last_error(self) -> str | None:
        return None

    async def connect(self) -> None:
        if self._state is not MemoryState.CLOSED:
            raise TokenMemoryError("the memory is already connected; a memory is not reentrant")
        path = self._config.snapshot_path
        if path is not None and path.exists():
            await asyncio.to_thread(self._load, path)
        for stream_id in list(self._streams):
            self._enforce(stream_id)
        self._state = MemoryState.READY

    async def close(self) -> None:
        if self._state is MemoryState.CLOSED:
            return
        self._state = MemoryState.CLOSED
        path = self._config.snapshot_path
        if path is not None:  # nothing mutates a closed memory, so the thread may gather the rows itself
            await asyncio.to_thread(lambda: save_snapshot(path, self._snapshot()))
        self._streams.clear()
        self._frames.clear()

    async def wait_ready(self, timeout: float) -> bool:
        return self._state is MemoryState.READY

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _require_ready(self) -> None:
        if self._state is not MemoryState.READY:
            raise MemoryClosedError("the local memory is not connected; use `async with` or connect()")

    async def append(self, stream_id: str, tokens: VisualTokens, attention: torch.Tensor) -> AppendResult:
        self._require_ready()
        check_stream_id(stream_id)
        stream = self._streams.get(stream_id)
        previous = self._frames.get(stream_id) if stream_id in self._frames else self._seed_frame(stream)
        chunk, newest = score_chunk(tokens, attention, previous, self._retention)
        layout = Layout.of(chunk.tokens)
        if stream is not None and stream.layout != layout:
            raise LayoutMismatchError(
                f"stream {stream_id!r} stores {stream.layout.describe()}, the chunk is {layout.describe()}; "
                "delete the stream or use another stream id"
            )
        stream = self._streams.setdefault(stream_id, _Stream(layout))
        number = stream.next_chunk
        stream.next_chunk += 1
        n = len(chunk)
        rows = Rows(chunk.tokens, chunk.attention, chunk.redundancy, chunk.retention, torch.arange(n))
        stream.add(number, rows)
        stream.appended += n
        self._appended += n
        self._frames[stream_id] = newest
        evicted = self._enforce(stream_id)
        kept = stream.chunks[number].live if number in stream.chunks else 0
        total = sum(s.tokens for s in self._streams.values())
        return AppendResult(AppendStatus.STORED, number, kept, evicted, stream.tokens, total)

    def _seed_frame(self, stream: _Stream | None) -> FrameRef | None:
        if stream is None or not stream.chunks:
            return None
        latest = max(stream.chunks.values(), key=lambda c: float(c.rows.tokens.time.max()))
        return newest_frame(latest.live_rows().tokens)

    def _enforce(self, stream_id: str) -> int:
        """Evict what the stream's and then the global budgets require; returns tokens evicted."""
        stream = self._streams[stream_id]
        fraction = self._config.compact_fraction
        evicted = stream.evict(plan_stream(stream.index(stream_id), self._retention), fraction)
        indexes = [s.index(sid) for sid, s in self._streams.items()]
        for sid, positions in plan_global(indexes, self._retention).items():
            evicted += self._streams[sid].evict(positions, fraction)
        self._evicted += evicted
        return evicted

    async def read(
        self, stream_ids: Sequence[str], *, since: float | None = None, until: float | None = None
    ) -> dict[str, RetainedTokens]:
        self._require_ready()
        out = {
            sid: self._streams[sid].read(sid, since, until)
            for sid in (check_stream_id(s) for s in stream_ids)
            if sid in self._streams
        }
        self._bytes_read += sum(len(r) * self._streams[sid].layout.width for sid, r in out.items())
        return out

    async def read_layout(
        self, stream_ids: Sequence[str], *, since: float | None = None, until: float | None = None
    ) -> dict[str, RetainedLayout]:
        self._require_ready()
        out = {
            sid: self._streams[sid].read_layout(sid, since, until)
            for sid in (check_stream_id(s) for s in stream_ids)
            if sid in self._streams
        }
        self._bytes_read += sum(len(r) for r in out.values()) * ENTRY_BYTES
        return out

    async def read_rows(self, layout: RetainedLayout, index: torch.Tensor) -> VisualTokens:
        self._require_ready()
        stream = self._streams.get(layout.stream_id)
        if stream is None:
            raise RowsGoneError(f"stream {layout.stream_id!r} was deleted since its layout was read")
        tokens = rows_in_process(layout, index, stream.chunks.get)
        self._bytes_read += len(index) * record_head(stream.layout)
        return tokens

    async def stats(self, stream_id: str | None = None) -> MemoryStats:
        chosen = (
            self._streams if stream_id is None else {k: v for k, v in self._streams.items() if k == stream_id}
        )
        per = {sid: s.stats(sid, self._retention.bucket_seconds) for sid, s in chosen.items()}
        return MemoryStats(
            state=self._state,
            tokens=sum(s.tokens for s in self._streams.values()),
            bytes=sum(s.tokens * s.layout.width for s in self._streams.values()),
            appended=self._appended,
            evicted=self._evicted,
            corrupt_entries=self._corrupt,
            bytes_read=self._bytes_read,
            streams=per,
        )

    async def delete(self, stream_id: str) -> bool:
        self._require_ready()
        self._frames.pop(check_stream_id(stream_id), None)
        return self._streams.pop(stream_id, None) is not None

    async def streams(self) -> list[str]:
        self._require_ready()
        return sorted(self._streams)

    def _snapshot(self) -> Snapshot:
        out = []
        for sid, s in self._streams.items():
            parts = s.live_parts()
            rows = Rows.concat([r for _, r in parts]) if parts else None
            chunk = (
                torch.cat([torch.full((len(r),), c, dtype=torch.int64) for c, r in parts]) if parts else None
            )
            out.append(
                StreamSnapshot(sid, s.layout, s.head, s.next_chunk, s.appended, s.evicted, rows, chunk)
            )
        return Snapshot(out, self._appended, self._evicted)

    def _load(self, path: Path) -> None:
        try:
            snap = load_snapshot(path)
        except CorruptEntryError as exc:
            self._corrupt += 1
            aside = path.with_name(path.name + ".corrupt")
            path.replace(aside)
            logger.error("%s; moved it to %s and starting empty", exc, aside)
            return
        self._corrupt += snap.corrupt
        self._appended, self._evicted = snap.appended, snap.evicted
        for s in snap.streams:
            stream = _Stream(s.layout, s.head, s.next_chunk, s.appended, s.evicted)
            if s.rows is not None and s.chunk is not None:
                for number in torch.unique(s.chunk).tolist():
                    stream.add(number, s.rows.select(s.chunk == number))
            stream.head = s.head
            self._streams[s.stream_id] = stream
