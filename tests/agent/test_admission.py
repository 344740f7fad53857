"""Load shedding: the ingest lag raises a shed factor that streams read as a lower sampling rate, and the
factor comes back down when the load drops; on a real tiny model, a real worker and a real recording."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agent.admission import LoadShedder, thin
from agent.config import ModelSection, StreamSection
from agent.engine import ChunkInput, Engine
from agent.ingest import StreamIngest
from agent.memory import MemoryConfig, open_memory
from agent.worker import ModelWorker
from flexselect.adapters import VideoLLMAdapter
from streams import StreamConfig


def test_the_factor_doubles_after_a_held_overload_and_halves_after_a_held_recovery():
    shed = LoadShedder(shed_after_s=4.0, recover_below_s=1.0, hold_s=8.0, max_factor=4)
    assert shed.observe(5.0, now=0.0) == 1  # over the threshold, not for long enough yet
    assert shed.observe(6.0, now=7.9) == 1
    assert shed.observe(6.0, now=8.0) == 2
    assert shed.observe(6.0, now=15.0) == 2  # a new hold starts at each change
    assert shed.observe(6.0, now=16.0) == 4
    assert shed.observe(9.0, now=40.0) == 4  # never past max_factor
    assert shed.observe(2.0, now=41.0) == 4  # between the thresholds: no change either way
    assert shed.observe(0.5, now=42.0) == 4
    assert shed.observe(0.5, now=50.0) == 2
    assert shed.observe(0.5, now=58.0) == 1
    assert shed.changes == 4 and shed.lag_s == 0.5


def test_a_short_spike_sheds_nothing():
    shed = LoadShedder(shed_after_s=4.0, recover_below_s=1.0, hold_s=8.0)
    for t, lag in [(0.0, 9.0), (3.0, 9.0), (4.0, 0.5), (20.0, 9.0), (27.0, 9.0)]:
        assert shed.observe(lag, now=t) == 1


def test_thresholds_must_leave_a_band_between_them():
    with pytest.raises(ValueError, match="recover_below_s"):
        LoadShedder(shed_after_s=1.0, recover_below_s=1.0)


@pytest.mark.parametrize(
    ("count", "factor", "kept"),
    [
        (4, 1, [0, 1, 2, 3]),
        (4, 2, [0, 2]),
        (8, 4, [0, 4]),
        (4, 4, [0, 2]),
        (2, 4, [0, 1]),
        (8, 2, [0, 2, 4, 6]),
    ],
)
def test_thinning_keeps_every_nth_frame_but_at_least_one_temporal_patch(count, factor, kept):
    assert thin(count, factor, temporal_patch=2) == kept


@pytest.fixture(scope="module")
def engine(adapter: VideoLLMAdapter) -> Engine:
    return Engine(adapter, ModelSection(name="tiny"), standing_prompts=["describe the video"])


def chunk(k: int) -> ChunkInput:
    frames = np.random.default_rng(k).integers(0, 256, (4, 56, 56, 3), dtype=np.uint8)
    return ChunkInput(f"s{k}", frames, np.arange(4.0), frame_offset=0, time_origin=0.0, fps=1.0)


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def test_a_flood_of_chunks_sheds_and_a_light_load_recovers(engine):
    engine.encode(chunk(0))  # warm-up
    # The flood's last chunk waits for the 23 before it; thresholds in units of one encode's time keep the
    # test about queueing, not about how fast this machine encodes.
    one = min(_seconds(lambda: engine.encode(chunk(0))) for _ in range(3))
    shed = LoadShedder(shed_after_s=8 * one, recover_below_s=2 * one, hold_s=0.0, max_factor=4)

    async def main() -> tuple[int, float, list[int]]:
        async with ModelWorker(
            engine, question_slots=1, chunk_slots=4, max_batch_chunks=1, max_consecutive=1, shedder=shed
        ) as worker:
            await asyncio.gather(*(worker.encode(chunk(k)) for k in range(24)))  # 24 streams at once
            flooded, peak_lag = worker.shed_factor, shed.lag_s
            factors = []
            for k in range(10):  # then one stream, one chunk at a time: nothing waits behind another
                await worker.encode(chunk(k))
                factors.append(worker.shed_factor)
            return flooded, peak_lag, factors

    flooded, peak_lag, factors = asyncio.run(main())
    assert peak_lag > 8 * one
    assert flooded > 1
    assert factors[-1] == 1
    assert factors == sorted(factors, reverse=True)  # it only comes down under a light load


async def test_a_shedding_worker_makes_a_stream_sample_fewer_frames(engine, recording: Path):
    section = StreamSection(id="cam", uri=str(recording), source=StreamConfig(sample_fps=2, chunk_seconds=2))
    states = []

    async def on_chunk(stream_id: str, t: float) -> None:
        return None

    async with open_memory(MemoryConfig()) as memory:
        async with ModelWorker(
            engine, question_slots=1, chunk_slots=4, max_batch_chunks=4, max_consecutive=1,
            shedder=LoadShedder(factor=2, hold_s=1e9),  # already shedding, and staying so
        ) as worker:  # fmt: skip
            ingest = StreamIngest(
                section, worker=worker, memory=memory, temporal_patch=2,
                on_state=lambda h: states.append(h.state), on_chunk=on_chunk,
            )  # fmt: skip
            await ingest.run()
        tokens = (await memory.read(["cam"]))["cam"].tokens
    assert ingest.health.shed_factor == 2
    assert ingest.health.chunks == 4  # 8 s of media in 2 s chunks of 4 frames
    assert ingest.health.frames == 16  # decoded frames, all of them
    assert len(tokens.frame_ids()) == 4 * 1  # one temporal step (2 kept frames) per chunk, not two
    assert tokens.seconds_per_step == pytest.approx(2.0)  # 2 frames per step at the shed rate of 1 fps
