"""The thread-to-loop channel: bounded, drop-oldest counts every drop, wait blocks the producer."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from streams.channel import ChunkChannel, DropPolicy
from streams.errors import SourceUnavailableError
from streams.source import Chunk


def chunk(seq: int) -> Chunk:
    return Chunk("cam", seq, np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1), np.zeros(1, np.int64), live=True)


async def produce(channel: ChunkChannel, seqs: range, stop: threading.Event | None = None) -> list[bool]:
    """Send chunks from a real producer thread, as a decoder does."""
    stop = stop or threading.Event()
    return await asyncio.to_thread(lambda: [channel.send(chunk(s), stop) for s in seqs])


async def test_drop_oldest_keeps_the_newest_chunks_and_counts_each_drop() -> None:
    dropped: list[int] = []
    channel = ChunkChannel(
        asyncio.get_running_loop(), 3, DropPolicy.DROP_OLDEST, on_drop=lambda c: dropped.append(c.seq)
    )
    await produce(channel, range(10))
    await asyncio.sleep(0)  # let the scheduled hand-overs run
    assert len(channel) == 3
    assert dropped == [0, 1, 2, 3, 4, 5, 6]
    assert [(await channel.get()).seq for _ in range(3)] == [7, 8, 9]


async def test_wait_blocks_the_producer_until_the_consumer_takes_a_chunk() -> None:
    channel = ChunkChannel(asyncio.get_running_loop(), 2, DropPolicy.WAIT)
    producer = asyncio.ensure_future(produce(channel, range(5)))
    await asyncio.sleep(0.3)
    assert len(channel) == 2 and not producer.done()
    got = [(await channel.get()).seq for _ in range(5)]
    assert got == [0, 1, 2, 3, 4]
    assert await producer == [True] * 5


async def test_a_waiting_producer_gives_up_when_its_source_stops() -> None:
    channel = ChunkChannel(asyncio.get_running_loop(), 1, DropPolicy.WAIT)
    stop = threading.Event()
    producer = asyncio.ensure_future(produce(channel, range(3), stop))
    await asyncio.sleep(0.2)
    stop.set()
    assert await asyncio.wait_for(producer, 2.0) == [True, False, False]


async def test_consumer_gets_remaining_chunks_then_the_producers_error() -> None:
    channel = ChunkChannel(asyncio.get_running_loop(), 4, DropPolicy.WAIT)
    await produce(channel, range(2))
    error = SourceUnavailableError("gone")
    await asyncio.to_thread(channel.finish, error)
    assert [(await channel.get()).seq for _ in range(2)] == [0, 1]
    with pytest.raises(SourceUnavailableError, match="gone"):
        await channel.get()


async def test_close_ends_iteration_at_once_and_releases_chunks() -> None:
    channel = ChunkChannel(asyncio.get_running_loop(), 4, DropPolicy.WAIT)
    await produce(channel, range(2))
    channel.close()
    assert len(channel) == 0
    with pytest.raises(StopAsyncIteration):
        await channel.get()


async def test_a_waiting_consumer_wakes_up_on_close() -> None:
    channel = ChunkChannel(asyncio.get_running_loop(), 4, DropPolicy.WAIT)
    getter = asyncio.ensure_future(channel.get())
    await asyncio.sleep(0.05)
    channel.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(getter, 1.0)
