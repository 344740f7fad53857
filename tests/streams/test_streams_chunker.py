"""Sampling picks frames on a fixed time grid; chunking cuts them into equal timed chunks."""

from __future__ import annotations

import numpy as np

from streams.chunker import Chunker, FrameSampler


def kept(sampler: FrameSampler, times: list[float]) -> list[int]:
    return [i for i, t in enumerate(times) if sampler.take(t)]


def test_sampling_25_fps_to_1_fps_keeps_every_25th_frame() -> None:
    times = [i / 25 for i in range(125)]
    assert kept(FrameSampler(1.0), times) == [0, 25, 50, 75, 100]


def test_sampling_above_the_source_rate_keeps_every_frame() -> None:
    times = [i / 10 for i in range(20)]
    assert kept(FrameSampler(30.0), times) == list(range(20))


def test_sampling_29_97_fps_to_2_fps_stays_on_the_grid() -> None:
    times = [i * 1001 / 30000 for i in range(300)]
    picked = [times[i] for i in kept(FrameSampler(2.0), times)]
    assert len(picked) == 20
    assert all(abs(t - 0.5 * k) < 1001 / 30000 for k, t in enumerate(picked))


def test_sampling_restarts_the_grid_after_a_gap() -> None:
    times = [0.0, 1.0, 2.0, 7.3, 8.3, 8.5, 9.3]
    assert kept(FrameSampler(1.0), times) == [0, 1, 2, 3, 4, 6]


def test_sampling_restarts_the_grid_when_time_goes_back() -> None:
    times = [10.0, 11.0, 0.0, 0.5, 1.0]
    assert kept(FrameSampler(1.0), times) == [0, 1, 2, 4]


def frame(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.uint8)


def test_chunker_closes_a_chunk_as_soon_as_it_is_full() -> None:
    chunker = Chunker("cam", chunk_seconds=2.0, frames_per_chunk=2, live=True)
    assert chunker.add(frame(0), 100.0, 0) == []
    (chunk,) = chunker.add(frame(1), 101.0, 25)
    assert (chunk.stream_id, chunk.seq, chunk.live) == ("cam", 0, True)
    assert chunk.frames.shape == (2, 2, 2, 3)
    assert chunk.times.tolist() == [100.0, 101.0]
    assert chunk.frame_index.tolist() == [0, 25]
    assert chunk.times.dtype == np.float64 and chunk.frame_index.dtype == np.int64


def test_chunker_closes_a_chunk_when_a_frame_falls_past_its_span() -> None:
    chunker = Chunker("cam", chunk_seconds=2.0, frames_per_chunk=2, live=False)
    chunker.add(frame(0), 0.0, 0)
    (chunk,) = chunker.add(frame(1), 5.0, 125)
    assert chunk.times.tolist() == [0.0]
    assert chunker.pending == 1


def test_chunker_numbers_chunks_and_flushes_the_partial_one() -> None:
    chunker = Chunker("cam", chunk_seconds=1.0, frames_per_chunk=2, live=False)
    chunks = [c for i in range(5) for c in chunker.add(frame(i), i * 0.5, i)]
    chunks += chunker.flush()
    assert [c.seq for c in chunks] == [0, 1, 2]
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert chunker.flush() == []


def test_chunker_starts_a_new_chunk_when_the_frame_size_changes() -> None:
    chunker = Chunker("cam", chunk_seconds=10.0, frames_per_chunk=4, live=True)
    chunker.add(frame(0), 0.0, 0)
    (chunk,) = chunker.add(np.zeros((4, 4, 3), np.uint8), 1.0, 1)
    assert chunk.frames.shape == (1, 2, 2, 3)


def test_sampling_keeps_the_frame_nearest_the_instant_when_live_times_wobble() -> None:
    sampler = FrameSampler(2.0)
    sampler.restart(frame_interval=0.1)
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.497, 0.6, 0.7, 0.8, 0.9, 0.998, 1.1]  # a few ms early
    assert kept(sampler, times) == [0, 5, 10]
