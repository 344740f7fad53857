"""Live RTSP against a real GStreamer server on loopback: content, clock, drops, failures, recovery."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

import numpy as np
import pytest

from streams import (
    AuthenticationError,
    Chunk,
    SourceUnavailableError,
    StreamConfig,
    StreamState,
    open_source,
)
from tests.streams.conftest import RtspServer, StateLog, decoder_threads, free_port, gstreamer_missing
from tests.streams.stream_clips import read_counter, write_counter_clip

FPS = 10  # the served clip's rate; frame i shows counter i
FAST = {"open_timeout_s": 3.0, "backoff_base_s": 0.2, "backoff_cap_s": 0.5, "backoff_jitter": 0.0}


def counters(chunk: Chunk) -> list[int]:
    return [read_counter(frame) for frame in chunk.frames]


async def take(source: object, n: int, *, timeout: float = 15.0) -> list[Chunk]:
    """The next n chunks of a started source."""
    async with asyncio.timeout(timeout):
        return [await source.__anext__() for _ in range(n)]  # type: ignore[attr-defined]


async def test_rtsp_chunks_match_the_served_clip(rtsp_server: RtspServer) -> None:
    started = time.time()
    config = StreamConfig(sample_fps=2, chunk_seconds=1, **FAST)
    async with open_source(rtsp_server.url(), config, stream_id="cam") as source:
        chunks = await take(source, 3)
        assert source.state is StreamState.STREAMING
    assert [c.seq for c in chunks] == [0, 1, 2]
    assert all(c.live and c.stream_id == "cam" and c.frames.shape == (2, 240, 320, 3) for c in chunks)
    shown = [n for c in chunks for n in counters(c)]
    index = np.concatenate([c.frame_index for c in chunks])
    times = np.concatenate([c.times for c in chunks])
    assert shown == list(range(0, 30, 5))  # every 5th frame of 10 fps, from the first
    assert index.tolist() == shown  # nothing decoded was lost or counted twice
    assert np.allclose(np.diff(times), 0.5, atol=0.03)  # camera spacing, not arrival bursts
    assert started - 1.0 < times[0] and times[-1] <= time.time()  # wall clock, never in the future


async def test_credentials_reach_the_server_but_no_log_line(
    rtsp_server_with_auth: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="streams")
    url = rtsp_server_with_auth.url(user="admin", password="s3cret!")
    async with open_source(url, StreamConfig(sample_fps=2, chunk_seconds=1, **FAST)) as source:
        (chunk,) = await take(source, 1)
        assert source.uri == f"rtsp://***:***@127.0.0.1:{rtsp_server_with_auth.port}/cam"
    assert counters(chunk) == [0, 5]
    assert caplog.records and all("s3cret" not in r.getMessage() for r in caplog.records)


async def test_wrong_credentials_fail_with_a_masked_authentication_error(
    rtsp_server_with_auth: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = rtsp_server_with_auth.url(user="admin", password="wrong-pw")
    source = open_source(url, StreamConfig(max_retries=0, **FAST))
    async with source:
        with pytest.raises(AuthenticationError, match="401 Unauthorized") as info:
            await take(source, 1)
        assert source.state is StreamState.FAILED
    assert "wrong-pw" not in str(info.value) and "rtsp://***:***@127.0.0.1" in str(info.value)
    assert "wrong-pw" not in (source.stats.last_error or "x")
    assert all("wrong-pw" not in r.getMessage() for r in caplog.records)


async def test_an_unreachable_host_fails_with_a_clear_masked_error(state_log: StateLog) -> None:
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/cam"
    source = open_source(url, StreamConfig(max_retries=2, **FAST), on_state=state_log)
    async with source:
        with pytest.raises(SourceUnavailableError, match="connection refused") as info:
            await take(source, 1)
        stats = source.stats
    assert "hunter2" not in str(info.value) and "rtsp://***:***@127.0.0.1" in str(info.value)
    assert stats.reconnects == 2 and stats.connects == 0
    assert state_log.states[-1] is StreamState.FAILED
    assert state_log.states.count(StreamState.BACKING_OFF) == 2


async def test_an_unreachable_host_keeps_backing_off_by_default(state_log: StateLog) -> None:
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/cam"
    async with open_source(url, StreamConfig(**FAST), on_state=state_log) as source:
        await asyncio.sleep(1.5)
        stats = source.stats
        assert source.state in (StreamState.BACKING_OFF, StreamState.CONNECTING)
    assert stats.reconnects >= 2
    assert stats.last_error is not None and "connection refused" in stats.last_error
    assert "hunter2" not in stats.last_error


@pytest.mark.slow
async def test_a_killed_server_is_reconnected_when_it_comes_back(
    rtsp_server: RtspServer, state_log: StateLog
) -> None:
    threads_before = threading.active_count()
    config = StreamConfig(sample_fps=2, chunk_seconds=1, **FAST)
    async with open_source(rtsp_server.url(), config, on_state=state_log) as source:
        before = await take(source, 2)
        rtsp_server.kill()
        await state_log.wait_for(StreamState.BACKING_OFF, timeout=10)
        await asyncio.sleep(1.0)  # a few refused attempts while the server is down
        rtsp_server.start()
        after = await take(source, 3)
        stats = source.stats
        assert threading.active_count() == threads_before + 1  # still one decoder thread
    assert state_log.states[-1] is StreamState.STREAMING
    assert stats.connects == 2 and stats.reconnects >= 1
    seqs = [c.seq for c in before + after]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    index = np.concatenate([c.frame_index for c in before + after])
    times = np.concatenate([c.times for c in before + after])
    assert np.all(np.diff(index) > 0) and np.all(np.diff(times) > 0)
    assert counters(after[-1])[0] < 40  # the restarted server plays its clip from the start
    assert threading.active_count() == threads_before and not decoder_threads()


@pytest.mark.slow
async def test_a_frozen_server_is_reported_stalled_then_recovers(
    rtsp_server: RtspServer, state_log: StateLog
) -> None:
    config = StreamConfig(sample_fps=2, chunk_seconds=1, stall_seconds=1.0, **{**FAST, "open_timeout_s": 1.0})
    async with open_source(rtsp_server.url(), config, on_state=state_log) as source:
        await take(source, 1)
        rtsp_server.freeze()
        frozen_at = len(state_log.states)
        await state_log.wait_for(StreamState.STALLED, timeout=5, after=frozen_at)
        await state_log.wait_for(StreamState.BACKING_OFF, timeout=5, after=frozen_at)
        rtsp_server.thaw()
        await take(source, 2)
        stats = source.stats
    assert stats.stalls >= 1 and stats.connects >= 2
    assert state_log.states[-1] is StreamState.STREAMING


@pytest.mark.slow
async def test_a_slow_consumer_gets_counted_drops_and_a_bounded_queue(rtsp_server: RtspServer) -> None:
    config = StreamConfig(sample_fps=4, chunk_seconds=0.5, queue_size=2, **FAST)
    seqs = []
    async with open_source(rtsp_server.url(), config) as source:
        async with asyncio.timeout(20):
            async for chunk in source:
                seqs.append(chunk.seq)
                assert source.queued <= 2
                if len(seqs) == 4:
                    break
                await asyncio.sleep(1.5)  # three chunks' worth of time per chunk
        stats = source.stats
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(seqs))
    assert gaps >= 2 and stats.drops >= gaps
    assert stats.chunks >= len(seqs) + stats.drops


async def test_closing_a_frozen_source_returns_at_once_and_its_thread_ends_at_the_stall_limit(
    rtsp_server: RtspServer,
) -> None:
    # A blocked read is not interrupted for a stop (that breaks FFmpeg's RTSP framing); it ends
    # when it has waited `stall_seconds`, and aclose() never waits longer than `close_timeout_s`.
    config = StreamConfig(sample_fps=2, chunk_seconds=1, stall_seconds=1.5, close_timeout_s=0.3, **FAST)
    source = open_source(rtsp_server.url(), config)
    async with source:
        await take(source, 1)
        rtsp_server.freeze()  # the decoder now blocks in a network read
        await asyncio.sleep(0.5)
        started = time.monotonic()
    assert time.monotonic() - started < 0.6
    assert source.thread is not None
    source.thread.join(2.0)
    assert not source.thread.is_alive()


async def test_cancelling_the_consumer_stops_the_thread_within_two_seconds(rtsp_server: RtspServer) -> None:
    got_chunk = asyncio.Event()
    source = open_source(rtsp_server.url(), StreamConfig(sample_fps=2, chunk_seconds=1, **FAST))

    async def consume() -> None:
        async with source:
            async for _ in source:
                got_chunk.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(got_chunk.wait(), 15)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0
    assert source.thread is not None and not source.thread.is_alive()
    assert source.state is StreamState.ENDED


async def test_a_second_cancel_while_closing_still_waits_for_the_decoder_thread(
    rtsp_server: RtspServer,
) -> None:
    # A stop may cancel again while the source closes (common.cancel.stop_task does); the closing task must
    # not end while its thread is inside FFmpeg: an agent exiting then crashed with SIGSEGV.
    config = StreamConfig(sample_fps=2, chunk_seconds=1, stall_seconds=1.5, close_timeout_s=5.0, **FAST)
    source = open_source(rtsp_server.url(), config)
    got_chunk = asyncio.Event()

    async def consume() -> None:
        async with source:
            async for _ in source:
                got_chunk.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(got_chunk.wait(), 15)
    rtsp_server.freeze()  # the decoder now blocks in a network read until the stall limit
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.sleep(0.2)
    task.cancel()  # while aclose() waits for the thread
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.thread is not None and not source.thread.is_alive()


async def test_closing_while_connecting_to_a_hung_server_stops_within_the_open_timeout(
    rtsp_server: RtspServer,
) -> None:
    rtsp_server.freeze()  # accepts TCP connections (kernel backlog) but never answers
    source = open_source(rtsp_server.url(), StreamConfig(**{**FAST, "open_timeout_s": 1.0}))
    async with source:
        await asyncio.sleep(0.3)
        assert source.state is StreamState.CONNECTING
        started = time.monotonic()
    assert time.monotonic() - started < 1.5
    assert source.thread is not None and not source.thread.is_alive()


async def test_aclose_never_waits_longer_than_close_timeout(rtsp_server: RtspServer) -> None:
    rtsp_server.freeze()
    config = StreamConfig(**{**FAST, "open_timeout_s": 2.0, "close_timeout_s": 0.3})
    source = open_source(rtsp_server.url(), config)
    async with source:
        await asyncio.sleep(0.2)
        started = time.monotonic()
    assert time.monotonic() - started < 0.6
    assert source.thread is not None and source.thread.is_alive()  # still inside FFmpeg's open
    source.thread.join(3.0)  # ... which gives up at its open time-out, and the thread ends
    assert not source.thread.is_alive()


async def test_a_camera_slower_than_the_poll_interval_streams_without_reconnecting(tmp_path) -> None:
    # Frame gaps of 0.5 s: a read that waits between frames must not be mistaken for a failure.
    if (reason := gstreamer_missing()) is not None:
        pytest.skip(reason)
    server = RtspServer(write_counter_clip(tmp_path / "slow.mp4", frames=40, fps=2, width=64, height=64))
    server.start()
    try:
        config = StreamConfig(sample_fps=2, chunk_seconds=2, **FAST)
        async with open_source(server.url(), config, stream_id="slow") as source:
            chunks = await take(source, 4, timeout=20.0)
            stats = source.stats
    finally:
        server.kill()
    assert (stats.connects, stats.reconnects) == (1, 0), stats.last_error
    assert [n for c in chunks for n in counters(c)] == list(range(16))
