"""ThreadedSource: the asyncio face of one source whose decoding runs in its own thread."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from streams.channel import ChunkChannel, DropPolicy
from streams.config import StreamConfig
from streams.decoder import DecodeWorker
from streams.source import Chunk, StreamState, StreamStats
from streams.uri import SourceSpec, is_recording, parse_source

logger = logging.getLogger(__name__)

StateCallback = Callable[[StreamState], None]


def open_source(
    uri: str | os.PathLike[str],
    config: StreamConfig | None = None,
    *,
    stream_id: str | None = None,
    on_state: StateCallback | None = None,
) -> ThreadedSource:
    """A FrameSource for `uri`: rtsp(s)://, http(s)://, a local file (or file://), or a V4L2 device.

    Nothing is opened until the source is entered (`async with`) or started.

    Args:
        uri: where to read from; credentials in it never reach a log line or an error.
        config: sampling, chunking, buffering and reconnect settings; defaults if None.
        stream_id: the id put on every chunk; the masked URI if None.
        on_state: called on the event loop with each new state.

    Raises:
        UnsupportedSourceError: the URI's scheme is not supported.
    """
    spec = parse_source(uri)
    config = config or StreamConfig()
    live = config.live if config.live is not None else not is_recording(spec)
    return ThreadedSource(spec, config, stream_id=stream_id or spec.masked, live=live, on_state=on_state)


class ThreadedSource:
    """A FrameSource backed by one daemon decoder thread and a bounded chunk queue.

    Single use: once closed it cannot be started again; open a new one.
    """

    def __init__(
        self,
        spec: SourceSpec,
        config: StreamConfig,
        *,
        stream_id: str,
        live: bool,
        on_state: StateCallback | None = None,
    ) -> None:
        self.config = config
        self._spec = spec
        self._stream_id = stream_id
        self._live = live
        self._on_state = on_state
        self._stats = StreamStats()
        self._stop = threading.Event()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: ChunkChannel | None = None
        self._worker: DecodeWorker | None = None
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future[None] | None = None

    # --- what the agent reads --------------------------------------------------------------------

    @property
    def stream_id(self) -> str:
        return self._stream_id

    @property
    def uri(self) -> str:
        """The source URI with credentials masked."""
        return self._spec.masked

    @property
    def live(self) -> bool:
        return self._live

    @property
    def drop_policy(self) -> DropPolicy:
        """DROP_OLDEST for live and real-time-paced sources, WAIT for recordings, unless configured."""
        if self.config.drop_policy != "auto":
            return DropPolicy(self.config.drop_policy)
        return DropPolicy.DROP_OLDEST if self._live or self.config.realtime else DropPolicy.WAIT

    @property
    def state(self) -> StreamState:
        state = self._worker.state if self._worker else StreamState.CONNECTING
        return StreamState.ENDED if self._closed and not state.final else state

    @property
    def stats(self) -> StreamStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    @property
    def queued(self) -> int:
        """Chunks waiting for the consumer (never more than `config.queue_size`)."""
        return len(self._channel) if self._channel else 0

    @property
    def thread(self) -> threading.Thread | None:
        """The decoder thread, once started."""
        return self._thread

    # --- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the decoder thread (idempotent while open)."""
        if self._closed:
            raise RuntimeError(f"source {self._stream_id} is closed; open a new one")
        if self._thread is not None:
            return
        self._loop = loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._channel = ChunkChannel(loop, self.config.queue_size, self.drop_policy, on_drop=self._count_drop)
        self._worker = DecodeWorker(
            self._spec,
            self.config,
            stream_id=self._stream_id,
            live=self._live,
            channel=self._channel,
            stats=self._stats,
            stop=self._stop,
            notify=self._notify_threadsafe,
        )
        self._thread = threading.Thread(
            target=self._run_thread, name=f"streams-decode:{self._stream_id}", daemon=True
        )
        self._thread.start()

    async def aclose(self) -> None:
        """Stop decoding and release the queue; waits up to `config.close_timeout_s` for the thread.

        A streaming thread notices the stop at its next packet (reads are never interrupted: that
        would break FFmpeg's RTSP framing); one blocked in FFmpeg notices it when its read waits
        out `stall_seconds` (a silent source) or its open time-out expires (connecting). It is a
        daemon thread and touches nothing of the caller's once stopped.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._channel is not None:
            self._channel.close()
        if self._done is None or self._thread is None:
            return
        finished, cancelled = await self._wait_for_thread(self.config.close_timeout_s)
        if finished:
            # The thread has handed over its last callback and is returning: this join is immediate.
            self._thread.join(timeout=0.5)
        else:
            logger.warning(
                "stream %s: decoder thread still blocked in FFmpeg after %.1f s; it exits when "
                "its open (%.0f s) or stall (%.0f s) time-out expires",
                self._stream_id,
                self.config.close_timeout_s,
                self.config.open_timeout_s,
                self.config.stall_seconds,
            )
        if cancelled:
            raise asyncio.CancelledError

    async def _wait_for_thread(self, timeout_s: float) -> tuple[bool, bool]:
        """Wait up to `timeout_s` for the decoder thread to finish, also through cancels.

        Returns whether it finished and whether the wait was cancelled. A cancel does not cut the wait short
        (the caller raises it after): a caller that went on while the thread is still inside FFmpeg could
        let the interpreter exit under it, which crashes (SIGSEGV; seen when a stop cancelled twice).
        """
        assert self._done is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        cancelled = False
        while not self._done.done():
            left = deadline - loop.time()
            if left <= 0:
                return False, cancelled
            try:
                await asyncio.wait([self._done], timeout=left)
            except asyncio.CancelledError:
                cancelled = True
        return True, cancelled

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Chunk:
        if self._channel is None:
            raise RuntimeError("start the source first: `async with open_source(...) as source`")
        return await self._channel.get()

    # --- thread bridge ---------------------------------------------------------------------------

    def _run_thread(self) -> None:
        assert self._worker is not None
        try:
            self._worker.run()
        finally:
            self._call_soon(self._mark_done)

    def _mark_done(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _notify_threadsafe(self, state: StreamState) -> None:
        if self._on_state is not None:
            self._call_soon(self._deliver_state, state)

    def _deliver_state(self, state: StreamState) -> None:
        assert self._on_state is not None
        try:
            self._on_state(state)
        except Exception:  # a faulty observer must not break the source
            logger.exception("stream %s: on_state callback failed", self._stream_id)

    def _call_soon(self, callback: Callable[..., None], *args: object) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(callback, *args)

    def _count_drop(self, chunk: Chunk) -> None:
        self._stats.drops += 1
        drops = self._stats.drops
        if drops in (1, 10, 100) or drops % 1000 == 0:
            logger.warning(
                "stream %s: consumer behind, dropped chunk %d (%d dropped so far)",
                self._stream_id,
                chunk.seq,
                drops,
            )
