"""Recordings: media-time chunks whose frames, times and indices match the file; clear failures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from streams import (
    Chunk,
    InvalidMediaError,
    NoVideoStreamError,
    SourceNotFoundError,
    StreamConfig,
    StreamState,
    UnsupportedSourceError,
    open_source,
)
from tests.streams.conftest import StateLog, decoder_threads
from tests.streams.stream_clips import read_counter, write_counter_clip, write_wav


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s at 10 fps: frame i shows counter i."""
    return write_counter_clip(tmp_path_factory.mktemp("file") / "clip.mp4", frames=100, fps=10)


async def collect(uri: str | Path, config: StreamConfig, **kwargs: object) -> list[Chunk]:
    async with open_source(uri, config, **kwargs) as source:  # type: ignore[arg-type]
        return [chunk async for chunk in source]


def counters(chunk: Chunk) -> list[int]:
    return [read_counter(frame) for frame in chunk.frames]


async def test_file_chunks_carry_the_sampled_frames_with_media_times(clip: Path) -> None:
    chunks = await collect(clip, StreamConfig(sample_fps=2, chunk_seconds=2), stream_id="rec")
    assert [c.seq for c in chunks] == [0, 1, 2, 3, 4]
    assert all(c.stream_id == "rec" and not c.live for c in chunks)
    assert all(c.frames.shape == (4, 240, 320, 3) and c.frames.dtype == np.uint8 for c in chunks)
    assert [counters(c) for c in chunks] == [[i, i + 5, i + 10, i + 15] for i in range(0, 100, 20)]
    assert np.concatenate([c.frame_index for c in chunks]).tolist() == list(range(0, 100, 5))
    assert np.allclose(np.concatenate([c.times for c in chunks]), np.arange(0, 10, 0.5))


async def test_the_last_chunk_of_a_recording_may_be_partial(tmp_path: Path) -> None:
    path = write_counter_clip(tmp_path / "short.mp4", frames=25, fps=10)
    chunks = await collect(path, StreamConfig(sample_fps=2, chunk_seconds=2))
    assert [len(c) for c in chunks] == [4, 1]
    assert counters(chunks[-1]) == [20]


async def test_file_source_reports_its_states_and_counters(clip: Path, state_log: StateLog) -> None:
    config = StreamConfig(sample_fps=2, chunk_seconds=2)
    async with open_source(clip, config, on_state=state_log) as source:
        assert source.live is False
        _ = [chunk async for chunk in source]
        await asyncio.sleep(0)
        stats = source.stats
        assert source.state is StreamState.ENDED
    assert state_log.states == [StreamState.STREAMING, StreamState.ENDED]
    assert (stats.connects, stats.frames_decoded, stats.frames_sampled, stats.chunks) == (1, 100, 20, 5)
    assert (stats.drops, stats.reconnects, stats.stalls, stats.last_error) == (0, 0, 0, None)


async def test_keyframes_only_decodes_only_keyframes(tmp_path: Path) -> None:
    path = write_counter_clip(tmp_path / "gop.mp4", frames=60, fps=10, gop=10)
    async with open_source(
        path, StreamConfig(sample_fps=10, chunk_seconds=10, keyframes_only=True)
    ) as source:
        chunks = [chunk async for chunk in source]
        assert source.stats.frames_decoded == 6
    assert counters(chunks[0]) == [0, 10, 20, 30, 40, 50]
    assert chunks[0].frame_index.tolist() == [0, 10, 20, 30, 40, 50]
    assert np.allclose(chunks[0].times, [0, 1, 2, 3, 4, 5])


async def test_keyframes_only_still_caps_the_rate(tmp_path: Path) -> None:
    path = write_counter_clip(tmp_path / "gop.mp4", frames=60, fps=10, gop=5)
    chunks = await collect(path, StreamConfig(sample_fps=1, chunk_seconds=10, keyframes_only=True))
    assert counters(chunks[0]) == [0, 10, 20, 30, 40, 50]


async def test_max_side_downscales_keeping_the_aspect(clip: Path) -> None:
    chunks = await collect(clip, StreamConfig(sample_fps=1, chunk_seconds=5, max_side=160))
    assert chunks[0].frames.shape == (5, 120, 160, 3)
    assert counters(chunks[0]) == [0, 10, 20, 30, 40]


async def test_realtime_pacing_replays_a_recording_at_its_own_speed(tmp_path: Path) -> None:
    path = write_counter_clip(tmp_path / "two_s.mp4", frames=20, fps=10)
    started = time.monotonic()
    chunks = await collect(path, StreamConfig(sample_fps=5, chunk_seconds=1, realtime=True))
    elapsed = time.monotonic() - started
    assert 1.7 <= elapsed < 4.0  # the last sampled frame is at 1.8 s media time
    assert np.concatenate([c.times for c in chunks]).tolist() == pytest.approx(np.arange(0, 2, 0.2).tolist())


async def test_a_slow_consumer_of_a_recording_loses_nothing(clip: Path) -> None:
    config = StreamConfig(sample_fps=10, chunk_seconds=0.5, queue_size=1)
    seqs = []
    async with open_source(clip, config) as source:
        async for chunk in source:
            seqs.append(chunk.seq)
            assert source.queued <= 1
            await asyncio.sleep(0.01)
        assert source.stats.drops == 0
    assert seqs == list(range(20))


async def test_closing_a_recording_that_waits_for_its_consumer_stops_the_thread(clip: Path) -> None:
    source = open_source(clip, StreamConfig(sample_fps=10, chunk_seconds=0.2, queue_size=1))
    async with source:
        await source.__anext__()
        await asyncio.sleep(0.2)  # the decoder is now blocked on the full queue
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    assert source.thread is not None and not source.thread.is_alive()
    assert not decoder_threads()


async def test_a_missing_file_fails_with_source_not_found(tmp_path: Path, state_log: StateLog) -> None:
    source = open_source(tmp_path / "nope.mp4", on_state=state_log)
    async with source:
        with pytest.raises(SourceNotFoundError, match=r"no such file \(.*nope\.mp4\)"):
            await source.__anext__()
        assert source.state is StreamState.FAILED
        assert "no such file" in (source.stats.last_error or "")


async def test_a_truncated_file_without_its_index_fails_at_open(clip: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the moov index is at the end
    with pytest.raises(InvalidMediaError, match="corrupt, truncated or not media"):
        await collect(cut, StreamConfig())


async def test_a_truncated_file_yields_what_it_holds_then_fails_as_truncated(tmp_path: Path) -> None:
    path = write_counter_clip(tmp_path / "fast.mp4", frames=100, fps=10, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    chunks: list[Chunk] = []
    source = open_source(cut, StreamConfig(sample_fps=1, chunk_seconds=1))
    async with source:
        with pytest.raises(InvalidMediaError, match=r"truncated: media data ends at \d+\.\d s of 10\.0 s"):
            async for chunk in source:
                chunks.append(chunk)
        assert source.state is StreamState.FAILED
    assert 2 <= len(chunks) <= 8
    assert [counters(c)[0] for c in chunks] == [10 * i for i in range(len(chunks))]


async def test_a_corrupt_file_fails_as_invalid_media(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidMediaError, match="not a readable video file"):
        await collect(junk, StreamConfig())


async def test_a_text_file_fails_as_invalid_media(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 100)
    with pytest.raises(InvalidMediaError, match="not a readable video file"):
        await collect(text, StreamConfig())


async def test_an_audio_only_file_fails_for_lack_of_a_video_stream(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "sound.wav")
    with pytest.raises(NoVideoStreamError, match=r"no video stream \(streams: audio\)"):
        await collect(wav, StreamConfig())


def test_an_unsupported_scheme_is_refused_before_any_thread_starts() -> None:
    with pytest.raises(UnsupportedSourceError, match="unsupported scheme 'ftp'"):
        open_source("ftp://user:pw@host/a.mp4")


async def test_iterating_before_start_explains_how_to_start(clip: Path) -> None:
    with pytest.raises(RuntimeError, match="async with open_source"):
        await open_source(clip).__anext__()
