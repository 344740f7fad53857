"""The bounded hand-over of chunks from a decoder thread to the event loop, with a named drop policy.

All state lives on the event loop: the thread only schedules work there (`call_soon_threadsafe`,
`run_coroutine_threadsafe`), so no lock is needed and the loop never blocks on the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from enum import Enum

from streams.source import Chunk

# How often a producer waiting for room re-checks that its source was not stopped, seconds.
WAIT_POLL_S = 0.1


class DropPolicy(Enum):
    """What happens to a chunk produced while the queue is full."""

    DROP_OLDEST = "drop_oldest"  # live: the newest chunk wins; the oldest is dropped and counted
    WAIT = "wait"  # recordings: the decoder waits for the consumer


class ChunkChannel:
    """At most `maxsize` chunks between one producer thread and one consumer task."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        maxsize: int,
        policy: DropPolicy,
        *,
        on_drop: Callable[[Chunk], None] = lambda _chunk: None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.policy = policy
        self._loop = loop
        self._on_drop = on_drop
        self._items: deque[Chunk] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._finished = False  # the producer said no more chunks will come
        self._error: BaseException | None = None
        self._closed = False  # the consumer is gone

    def __len__(self) -> int:
        return len(self._items)

    # --- event loop side -------------------------------------------------------------------------

    async def get(self) -> Chunk:
        """The next chunk; after the producer finished and the queue drained, its error or
        StopAsyncIteration; StopAsyncIteration at once after `close()`."""
        while not self._items:
            if self._closed or (self._finished and self._error is None):
                raise StopAsyncIteration
            if self._finished and self._error is not None:
                raise self._error
            self._readable.clear()
            await self._readable.wait()
        chunk = self._items.popleft()
        self._writable.set()
        return chunk

    def close(self) -> None:
        """The consumer leaves: release queued chunks, wake a waiting producer and a waiting get()."""
        self._closed = True
        self._items.clear()
        self._readable.set()
        self._writable.set()

    def _offer(self, chunk: Chunk) -> None:
        if self._closed or self._finished:
            return
        if len(self._items) >= self.maxsize:
            self._on_drop(self._items.popleft())
        self._items.append(chunk)
        self._readable.set()

    async def _put(self, chunk: Chunk) -> None:
        while len(self._items) >= self.maxsize and not self._closed:
            self._writable.clear()
            await self._writable.wait()
        if not self._closed:
            self._items.append(chunk)
            self._readable.set()

    def _finish(self, error: BaseException | None) -> None:
        if not self._finished:
            self._finished, self._error = True, error
        self._readable.set()

    # --- producer thread side --------------------------------------------------------------------

    def send(self, chunk: Chunk, stop: threading.Event) -> bool:
        """Hand `chunk` over from the producer thread, per the policy.

        DROP_OLDEST never blocks. WAIT blocks until there is room, polling `stop`. Returns False if
        the chunk was not delivered because the source stopped or the event loop is gone.
        """
        if self.policy is DropPolicy.DROP_OLDEST:
            return self._call_soon(self._offer, chunk)
        try:
            future = asyncio.run_coroutine_threadsafe(self._put(chunk), self._loop)
        except RuntimeError:  # the loop is closed
            return False
        while True:
            try:
                future.result(timeout=WAIT_POLL_S)
                return True
            except concurrent.futures.TimeoutError:
                if stop.is_set() or self._loop.is_closed():
                    future.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False

    def finish(self, error: BaseException | None = None) -> bool:
        """From the producer thread: no more chunks; the consumer gets `error` (if any) after the rest."""
        return self._call_soon(self._finish, error)

    def _call_soon(self, callback: Callable[..., None], *args: object) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True
