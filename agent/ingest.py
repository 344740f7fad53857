"""Per-stream ingest: chunks from a source, encoded by the worker, appended to the memory."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from agent.admission import thin
from agent.config import StreamSection
from agent.engine import ChunkInput
from agent.memory.base import TokenMemory
from agent.stream_position import ResumeError, StreamPosition, restore_position
from agent.worker import ModelWorker
from streams.errors import StreamError
from streams.source import Chunk, StreamState
from streams.threaded import open_source
from streams.uri import mask_uri

logger = logging.getLogger(__name__)

FPS_WINDOW_S = 30.0


@dataclass
class StreamHealth:
    """What the agent knows of one stream, for status messages and metrics."""

    stream_id: str
    state: StreamState = StreamState.CONNECTING
    chunks: int = 0
    frames: int = 0
    drops: int = 0
    reconnects: int = 0
    stalls: int = 0
    ingest_errors: int = 0
    shed_factor: int = 1  # >1: keeping every n-th frame because the model cannot keep up
    ingest_lag_s: float = 0.0  # how long its last chunk waited for the model
    last_error: str | None = None
    origin: float | None = None  # Unix time of media time 0 for recordings
    last_chunk_at: float | None = None
    _recent: deque[tuple[float, int]] = field(default_factory=deque)

    @property
    def online(self) -> bool:
        return self.state == StreamState.STREAMING

    def record_chunk(self, frames: int, now: float) -> None:
        self.chunks += 1
        self.frames += frames
        self.last_chunk_at = now
        self._recent.append((now, frames))
        while self._recent and now - self._recent[0][0] > FPS_WINDOW_S:
            self._recent.popleft()

    def fps(self, now: float) -> float:
        """Frames per second over the recent window (0 when idle)."""
        recent = [(t, n) for t, n in self._recent if now - t <= FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = recent[-1][0] - recent[0][0]
        return sum(n for _, n in recent[1:]) / span if span > 0 else 0.0


ChunkListener = Callable[[str, float], Awaitable[None]]
# (stream id, frames (T, H, W, 3) uint8, their times as stored, temporal patch) after a chunk is stored
FramesListener = Callable[[str, np.ndarray, np.ndarray, int], Awaitable[None]]


class StreamIngest:
    """Reads one stream until it ends or is cancelled; the stream's source reconnects by itself."""

    def __init__(
        self,
        section: StreamSection,
        *,
        worker: ModelWorker,
        memory: TokenMemory,
        temporal_patch: int,
        on_state: Callable[[StreamHealth], None],
        on_chunk: ChunkListener,
        on_frames: FramesListener | None = None,
    ) -> None:
        self.section = section
        self.worker = worker
        self.memory = memory
        self.temporal_patch = temporal_patch
        self.health = StreamHealth(section.id)
        self._on_state = on_state
        self._on_chunk = on_chunk
        self._on_frames = on_frames
        self._position: StreamPosition | None = None
        self.finished = asyncio.Event()  # set once `run` returns: every chunk read is ingested or skipped
        self._source = open_source(
            section.uri, section.source, stream_id=section.id, on_state=self._state_changed
        )

    def _state_changed(self, state: StreamState) -> None:
        self.health.state = state
        stats = self._source.stats
        self.health.reconnects, self.health.stalls, self.health.drops = (
            stats.reconnects,
            stats.stalls,
            stats.drops,
        )
        self.health.last_error = stats.last_error
        self._on_state(self.health)

    async def run(self) -> None:
        """Ingest until the source ends (recordings) or fails for good; cancellation stops it cleanly."""
        try:
            self._position = await restore_position(
                self.memory,
                self.section.id,
                live=self._source.live,
                temporal_patch=self.temporal_patch,
                frames_per_chunk=self.section.source.frames_per_chunk(),
                restart=self.section.restart,
                time_origin=self.section.time_origin,
                now=time.time(),
            )
            async with self._source as source:
                async for chunk in source:
                    await self._ingest(chunk)
        except (StreamError, ResumeError) as exc:
            self.health.state = StreamState.FAILED
            self.health.last_error = str(exc)
            logger.error("stream %s failed: %s", self.section.id, exc)
            self._on_state(self.health)
        finally:
            self._state_changed(self._source.state)
            self.finished.set()

    async def _ingest(self, chunk: Chunk) -> None:
        now = time.time()
        position = self._position
        assert position is not None
        if position.already_held(chunk):
            return
        times = chunk.times
        if not chunk.live:
            assert position.origin is not None
            self.health.origin = position.origin
            times = times + position.origin
        tp = self.temporal_patch
        factor = self.worker.shed_factor
        kept = thin(len(chunk.frames), factor, tp)
        frames, times = chunk.frames[kept], times[kept]
        fps = None if self.section.source.keyframes_only else self.section.source.sample_fps
        if fps is not None and len(kept) < len(chunk.frames):
            fps = fps * len(kept) / len(chunk.frames)
        if factor != self.health.shed_factor:
            logger.warning("stream %s: the model is behind, sampling 1 frame in %d", self.section.id, factor)
        self.health.shed_factor = factor
        job = ChunkInput(
            stream_id=self.section.id,
            frames=frames,
            times=times,
            frame_offset=position.frame_offset(chunk),
            time_origin=self.health.origin or float(times[0]),
            fps=fps,
        )
        try:
            encoded = await self.worker.encode(job)
            self.health.ingest_lag_s = self.worker.shedder.lag_s
            await self.memory.append(self.section.id, encoded.tokens, encoded.attention)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad chunk must not end a months-long stream
            self.health.ingest_errors += 1
            self.health.last_error = f"ingest failed: {exc}"
            logger.exception("stream %s: chunk %d not ingested", self.section.id, chunk.seq)
            return
        stats = self._source.stats
        self.health.drops = stats.drops
        self.health.record_chunk(len(chunk.frames), now)
        if self._on_frames is not None:
            await self._on_frames(self.section.id, chunk.frames, times, self.temporal_patch)
        await self._on_chunk(self.section.id, float(times[-1]))

    def describe(self) -> str:
        return f"{self.section.id} ({mask_uri(self.section.uri)})"
