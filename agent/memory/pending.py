"""Appends waiting for Redis: a bounded FIFO whose drop policy is "oldest first, counted"."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

from agent.memory.codec import Layout

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class EncodedAppend:
    """A checked, scored and encoded append; `uid` makes storing it idempotent."""

    stream_id: str
    uid: str
    layout: Layout
    blob: memoryview
    index: bytes
    tokens: int


class PendingBuffer:
    """At most `max_chunks` chunks and `max_bytes` chunk bytes; a push beyond drops the oldest."""

    def __init__(self, *, max_chunks: int, max_bytes: int) -> None:
        self._items: collections.deque[EncodedAppend] = collections.deque()
        self._max_chunks = max_chunks
        self._max_bytes = max_bytes
        self._bytes = 0
        self.dropped_chunks = 0
        self.dropped_tokens = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def tokens(self) -> int:
        return sum(item.tokens for item in self._items)

    def push(self, item: EncodedAppend) -> None:
        self._items.append(item)
        self._bytes += len(item.blob)
        while self._items and (len(self._items) > self._max_chunks or self._bytes > self._max_bytes):
            self.drop(self._items[0], "pending buffer full while Redis is away")

    def head(self) -> EncodedAppend | None:
        return self._items[0] if self._items else None

    def remove(self, item: EncodedAppend) -> None:
        """Take `item` out if it is still the head (it may have been dropped meanwhile)."""
        if self._items and self._items[0] is item:
            self._items.popleft()
            self._bytes -= len(item.blob)

    def drop(self, item: EncodedAppend, why: str) -> None:
        """Remove `item` (if queued) and count it as dropped; logs the first and every 100th drop."""
        if item in self._items:
            self._items.remove(item)
            self._bytes -= len(item.blob)
        self.dropped_chunks += 1
        self.dropped_tokens += item.tokens
        if self.dropped_chunks == 1 or self.dropped_chunks % 100 == 0:
            logger.warning(
                "%s: dropped a chunk of %r (%d dropped so far)", why, item.stream_id, self.dropped_chunks
            )

    def drop_all(self, why: str) -> None:
        while self._items:
            self.drop(self._items[0], why)
