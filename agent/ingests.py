"""The streams this agent ingests now: one `StreamIngest` task per stream, started and stopped on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping

from agent.config import StreamSection
from agent.ingest import ChunkListener, FramesListener, StreamHealth, StreamIngest
from agent.memory import TokenMemory
from agent.tasks import TaskSet
from agent.worker import ModelWorker

StateListener = Callable[[StreamHealth], None]


class Ingests(Mapping[str, StreamIngest]):
    """Stream id -> its running ingest; every task started here is cancelled and awaited by `stop()`."""

    def __init__(
        self,
        *,
        worker: ModelWorker,
        memory: TokenMemory,
        temporal_patch: int,
        on_state: StateListener,
        on_chunk: ChunkListener,
        on_frames: FramesListener | None,
    ) -> None:
        self.worker = worker
        self.memory = memory
        self.temporal_patch = temporal_patch
        self._on_state = on_state
        self._on_chunk = on_chunk
        self._on_frames = on_frames
        self._ingests: dict[str, StreamIngest] = {}
        self._tasks = TaskSet("ingest")

    def __getitem__(self, stream_id: str) -> StreamIngest:
        return self._ingests[stream_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ingests)

    def __len__(self) -> int:
        return len(self._ingests)

    def start(self, section: StreamSection) -> asyncio.Task[None]:
        """Start ingesting one stream; the task ends when the source ends or is cancelled."""
        ingest = StreamIngest(
            section,
            worker=self.worker,
            memory=self.memory,
            temporal_patch=self.temporal_patch,
            on_state=self._on_state,
            on_chunk=self._on_chunk,
            on_frames=self._on_frames,
        )
        self._ingests[section.id] = ingest
        return self._tasks.start(ingest.run(), name=f"ingest-{section.id}")

    def forget(self, stream_id: str) -> None:
        """Drop a stream whose ingest was stopped (a clustered agent handed it over)."""
        self._ingests.pop(stream_id, None)

    async def stop(self, timeout_s: float) -> None:
        """Cancel every ingest task still running and wait for them (at most `timeout_s`)."""
        await self._tasks.cancel(timeout_s)  # a decoder blocked in FFmpeg is a daemon thread
