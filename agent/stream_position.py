"""Where a stream's ingest stands across restarts: unique, ordered frame numbers; where a recording resumes.

The memory outlives the agent, so a restarted agent must neither reuse frame numbers the memory still
holds (evidence spans group tokens by frame number) nor ingest a recording a second time.

Live streams: each run numbers its frames from the larger of the wall clock in milliseconds and the
memory's highest frame plus a gap, so a run's frames are above every earlier run's and spans of two runs
never join. Recordings: a frame's number is its position, `chunk.seq * stride + i` (`stride` is a chunk's
frames rounded up to the temporal patch), so a resumed run numbers each chunk as the first run did.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Literal

from agent.memory.base import RetainedTokens, StreamMemoryStats, TokenMemory
from agent.memory.errors import MemoryUnavailableError
from streams.source import Chunk

logger = logging.getLogger(__name__)

RestartMode = Literal["resume", "replace"]
FRAMES_PER_SECOND_BOUND = 1000  # live numbering starts at the wall clock in ms: no run numbers faster
READY_WAIT_S = 5.0
TIME_SLACK_S = 1e-3  # media times read again from the same file are equal; this absorbs float noise


class ResumeError(ValueError):
    """A recording cannot be resumed: it no longer matches what the memory holds of it."""


def align(frame: int, temporal_patch: int) -> int:
    """The smallest multiple of `temporal_patch` at or above `frame` (adapters need aligned offsets)."""
    return temporal_patch * math.ceil(frame / temporal_patch)


@dataclass
class StreamPosition:
    """Frame numbering of one stream for this run, and what of a recording is already in memory.

    Attributes:
        temporal_patch: frames per temporal step of the model; offsets are multiples of it.
        stride: frames numbered per recording chunk (None for live streams, numbered in sequence).
        next_frame: the next live frame number.
        origin: Unix time of a recording's media time 0 (None until known).
        head_time: newest time the memory ever got for a resumed recording; chunks up to it are skipped.
        anchor: (frame, time) of the newest token held, to recover `origin` when its chunk is read again.
    """

    temporal_patch: int
    stride: int | None = None
    next_frame: int = 0
    origin: float | None = None
    head_time: float | None = None
    anchor: tuple[int, float] | None = None
    _last: int = -1

    def frame_offset(self, chunk: Chunk) -> int:
        """Number the chunk's frames: the first frame's number; later chunks always get higher numbers.

        Raises:
            AssertionError: a chunk would reuse a frame number (the identity would be silently wrong).
        """
        n = len(chunk.frames)
        if self.stride is None:
            offset = self.next_frame
            self.next_frame += align(n, self.temporal_patch)
        else:
            if n > self.stride:
                raise AssertionError(f"recording chunk {chunk.seq} has {n} frames, more than {self.stride}")
            offset = chunk.seq * self.stride
        if offset <= self._last:
            raise AssertionError(f"frame {offset} of chunk {chunk.seq} is not after frame {self._last}")
        self._last = offset + align(n, self.temporal_patch) - 1
        return offset

    def already_held(self, chunk: Chunk) -> bool:
        """For a resumed recording: whether the memory already holds this chunk (skip it, do not encode).

        Raises:
            ResumeError: the recording no longer matches the memory's frames.
        """
        if self.head_time is None:
            return False
        if self.origin is None:
            assert self.anchor is not None and self.stride is not None
            frame, time = self.anchor
            if chunk.seq < frame // self.stride:
                return True  # before the chunk of the newest token held: older still
            if chunk.seq > frame // self.stride:
                raise ResumeError(
                    f"cannot resume: chunk {chunk.seq} is past the chunk of frame {frame} held in memory, so "
                    "the recording or its sampling changed; set `restart: replace` to ingest it again"
                )
            index = min(frame - chunk.seq * self.stride, len(chunk.times) - 1)
            self.origin = time - float(chunk.times[index])
        # Chunks are appended whole and in order: one whose first frame is not after the head is held.
        if self.origin + float(chunk.times[0]) <= self.head_time + TIME_SLACK_S:
            return True
        self.head_time = None  # from here on, everything is new
        return False


async def restore_position(
    memory: TokenMemory,
    stream_id: str,
    *,
    live: bool,
    temporal_patch: int,
    frames_per_chunk: int,
    restart: RestartMode,
    time_origin: float | None,
    now: float,
) -> StreamPosition:
    """This run's position of a stream, from what the memory holds of it.

    A live stream continues above the memory's frames. A recording is deleted from the memory and ingested
    again (`replace`) or continued after the newest chunk the memory got (`resume`, which waits for an
    unavailable memory: guessing would ingest it twice).
    """
    if live:
        position = StreamPosition(
            temporal_patch, next_frame=align(int(now * FRAMES_PER_SECOND_BOUND), temporal_patch)
        )
        try:
            highest = await _highest_frame(memory, stream_id)
        except MemoryUnavailableError as exc:
            logger.warning(
                "stream %s: memory unavailable (%s); frames numbered from the clock", stream_id, exc
            )
            return position
        if highest is not None:
            position.next_frame = max(
                position.next_frame, align(highest + 1, temporal_patch) + temporal_patch
            )
        return position
    position = StreamPosition(
        temporal_patch, stride=align(frames_per_chunk, temporal_patch), origin=time_origin
    )
    while True:
        await _wait_ready(memory, stream_id)
        try:
            return await _recording_position(memory, stream_id, position, restart=restart, now=now)
        except MemoryUnavailableError as exc:
            logger.warning("stream %s: memory unavailable (%s); retrying before ingest", stream_id, exc)


async def _recording_position(
    memory: TokenMemory, stream_id: str, position: StreamPosition, *, restart: RestartMode, now: float
) -> StreamPosition:
    if restart == "replace":
        if await memory.delete(stream_id):
            logger.info("stream %s: replacing the recording's memory", stream_id)
        if position.origin is None:
            position.origin = now
        return position
    stats = (await memory.stats(stream_id)).streams.get(stream_id)
    retained = await _newest_tokens(memory, stream_id, stats)
    if stats is None or stats.head_time is None or retained is None:
        if position.origin is None:
            position.origin = now
        return position
    newest = int(retained.tokens.frame.argmax())
    position.anchor = (int(retained.tokens.frame[newest]), float(retained.tokens.time[newest]))
    position.head_time = stats.head_time
    logger.info(
        "stream %s: resuming the recording after the %d tokens the memory holds", stream_id, len(retained)
    )
    return position


async def _highest_frame(memory: TokenMemory, stream_id: str) -> int | None:
    stats = (await memory.stats(stream_id)).streams.get(stream_id)
    retained = await _newest_tokens(memory, stream_id, stats)
    return None if retained is None else int(retained.tokens.frame.max())


async def _newest_tokens(
    memory: TokenMemory, stream_id: str, stats: StreamMemoryStats | None
) -> RetainedTokens | None:
    """The stream's tokens at its newest retained time (frame order is time order), or None if it holds none.

    Reads only the newest chunk's metadata when it can (no embeddings); the whole stream's when that range was
    evicted.
    """
    if stats is None or stats.tokens == 0:
        return None
    for since in (stats.last_time, None):
        retained = (await memory.read_layout([stream_id], since=since)).get(stream_id)
        if retained is not None and len(retained):
            return retained
    return None


async def _wait_ready(memory: TokenMemory, stream_id: str) -> None:
    while not await memory.wait_ready(READY_WAIT_S):
        logger.warning("stream %s: waiting for the memory before resuming the recording", stream_id)
        await asyncio.sleep(0)
