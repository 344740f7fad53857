"""The `TokenMemory` protocol and the values that cross it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

import torch

from flexselect.types import VisualTokens


class MemoryState(enum.Enum):
    """Where a memory stands; `stats().state` and the `state` property report it."""

    CLOSED = "closed"  # not connected yet, or closed
    READY = "ready"  # appends are stored, reads are served
    UNAVAILABLE = "unavailable"  # backend unreachable: appends are buffered, reads raise, reconnecting


class AppendStatus(enum.Enum):
    STORED = "stored"  # written (and budgets enforced) atomically
    PENDING = "pending"  # buffered until the backend is back; may still be dropped if the buffer overflows
    DUPLICATE = "duplicate"  # a retried append whose first attempt had already been stored


@dataclass(frozen=True)
class AppendResult:
    """What one append did.

    Attributes:
        status: stored, pending or duplicate.
        chunk: the chunk's sequence number within its stream (None while pending).
        kept: tokens of this chunk still retained after eviction.
        evicted: tokens evicted by this append, over all streams.
        stream_tokens: tokens the stream retains afterwards.
        total_tokens: tokens the whole memory retains afterwards.
    """

    status: AppendStatus
    chunk: int | None = None
    kept: int = 0
    evicted: int = 0
    stream_tokens: int = 0
    total_tokens: int = 0


@dataclass
class RetainedTokens:
    """The retained tokens of one stream in time order (ties: chunk, then row), as CPU tensors.

    Attributes:
        stream_id: the stream they belong to.
        tokens: the tokens, byte-identical to what was appended (dtype kept).
        attention: (N,) float32 ingest attention as the caller gave it.
        redundancy: (N,) float32 redundancy term in [0, 1] computed at ingest.
        retention: (N,) float32 retention score that eviction ranked by.
        chunk: (N,) int64 sequence number of the chunk each token came in.
        row: (N,) int64 row of each token within its chunk.
    """

    stream_id: str
    tokens: VisualTokens
    attention: torch.Tensor
    redundancy: torch.Tensor
    retention: torch.Tensor
    chunk: torch.Tensor
    row: torch.Tensor

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class RetainedLayout(RetainedTokens):
    """A stream's retained rows without their embeddings (`TokenMemory.read_layout`): `tokens` carry
    zero-width embeddings, no deepstack and no selector rows; `read_rows` fetches chosen rows in full.

    Attributes:
        slot: (N,) int64 record of each row within its stored chunk when read (a hint: compaction moves
            rows, and `read_rows` finds them by (chunk, row)).
        selector_rows: whether the stream stores selector rows (`PairedTokens`).
    """

    slot: torch.Tensor
    selector_rows: bool


@dataclass(frozen=True)
class StreamMemoryStats:
    """Sizes of one stream's retained memory.

    Attributes:
        tokens / bytes / chunks: retained tokens, their payload bytes, chunks with at least one token.
        appended / evicted: tokens ever appended to / evicted from this stream (survive restarts).
        first_time / last_time: time range of the retained tokens in seconds (None when empty); Redis takes
            it from the stored chunks, whose ranges are refreshed on compaction, so until then it may still
            cover evicted rows.
        head_time: newest time ever appended; the recent window is measured back from it.
        buckets: retained tokens per time bucket index (floor(time / bucket_seconds)).
    """

    stream_id: str
    tokens: int
    bytes: int
    chunks: int
    appended: int
    evicted: int
    first_time: float | None
    last_time: float | None
    head_time: float | None
    buckets: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryStats:
    """Sizes of the whole memory (or of one stream) plus this process's health counters.

    Attributes:
        state: the memory's state when the stats were taken.
        tokens / bytes / appended / evicted: totals over all streams (shared by every agent on the store).
        pending_chunks / pending_tokens: appends buffered while the backend is unavailable (this process).
        dropped_chunks / dropped_tokens: buffered appends dropped because the buffer was full (this process).
        corrupt_entries: undecodable entries this process met and skipped, plus those the store recorded.
        foreign_keys: keys under the memory's prefix that it does not own (last scan).
        bytes_read: bytes this process read from the store for `read`, `read_layout` and `read_rows`.
        streams: per-stream stats (all streams, or the one asked for).
    """

    state: MemoryState
    tokens: int = 0
    bytes: int = 0
    appended: int = 0
    evicted: int = 0
    pending_chunks: int = 0
    pending_tokens: int = 0
    dropped_chunks: int = 0
    dropped_tokens: int = 0
    corrupt_entries: int = 0
    foreign_keys: int = 0
    bytes_read: int = 0
    streams: dict[str, StreamMemoryStats] = field(default_factory=dict)


class TokenMemory(Protocol):
    """A bounded, persistent store of visual tokens per stream; an async context manager (not reentrant)."""

    @property
    def state(self) -> MemoryState: ...

    @property
    def last_error(self) -> str | None: ...

    async def connect(self) -> None:
        """Open the backend (load a snapshot, reach Redis); an unreachable Redis leaves it UNAVAILABLE."""
        ...

    async def close(self) -> None:
        """Flush what can be flushed, persist (snapshot), release connections."""
        ...

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for READY; True when ready."""
        ...

    async def append(self, stream_id: str, tokens: VisualTokens, attention: torch.Tensor) -> AppendResult:
        """Store a chunk's tokens with their ingest attention and enforce the budgets, atomically.

        Args:
            stream_id: camera or recording name, `[A-Za-z0-9][A-Za-z0-9._@-]{0,127}`.
            tokens: the chunk's visual tokens (any device; stored on CPU).
            attention: (N,) non-negative query-independent attention from the standing prompts.

        Raises:
            MemoryInputError: bad stream id, shapes, non-finite values or an oversized chunk.
            LayoutMismatchError: dtype, width or deepstack levels differ from the stream's.
            MemoryClosedError: the memory is not connected.
        """
        ...

    async def read(
        self, stream_ids: Sequence[str], *, since: float | None = None, until: float | None = None
    ) -> dict[str, RetainedTokens]:
        """Retained tokens with `since <= time <= until` (seconds, inclusive) per stream, in time order.

        Streams the memory does not know (or whose data is corrupt) are absent from the result.

        Raises:
            MemoryUnavailableError: the backend is unreachable.
        """
        ...

    async def read_layout(
        self, stream_ids: Sequence[str], *, since: float | None = None, until: float | None = None
    ) -> dict[str, RetainedLayout]:
        """As `read`, without embeddings: each row's metadata and where it is stored (about 70 bytes a
        row), so a question reads the embeddings of only the rows it keeps (`read_rows`).

        Raises:
            MemoryUnavailableError: the backend is unreachable.
        """
        ...

    async def read_rows(self, layout: RetainedLayout, index: torch.Tensor) -> VisualTokens:
        """Rows `index` of `layout` in that order, in full (embeddings and deepstack; no selector rows).

        Raises:
            RowsGoneError: a row was evicted since `layout` was read (read the layout again).
            MemoryUnavailableError: the backend is unreachable.
        """
        ...

    async def stats(self, stream_id: str | None = None) -> MemoryStats:
        """Sizes and counters, for every stream or for one; never raises for unavailability."""
        ...

    async def delete(self, stream_id: str) -> bool:
        """Forget a stream entirely; False if it was unknown."""
        ...

    async def streams(self) -> list[str]:
        """The ids of the streams with stored state, sorted."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
