"""Frame numbering and a recording's resume point, on chunks made by hand (the restart tests use Redis)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.stream_position import ResumeError, StreamPosition, align
from streams import Chunk


def chunk(seq: int, times: list[float], *, live: bool = False) -> Chunk:
    n = len(times)
    return Chunk(
        stream_id="s",
        seq=seq,
        frames=np.zeros((n, 4, 4, 3), dtype=np.uint8),
        times=np.asarray(times, dtype=np.float64),
        frame_index=np.arange(n, dtype=np.int64),
        live=live,
    )


def test_align_rounds_up_to_the_temporal_patch():
    assert [align(f, 2) for f in (0, 1, 2, 3)] == [0, 2, 2, 4]


def test_live_frames_are_numbered_on_from_the_start_in_temporal_patches():
    position = StreamPosition(temporal_patch=2, next_frame=1000)
    offsets = [position.frame_offset(chunk(i, [0.0, 0.5, 1.0], live=True)) for i in range(3)]
    assert offsets == [1000, 1004, 1008]


def test_recording_frames_are_numbered_by_position_so_a_resumed_run_numbers_them_alike():
    position = StreamPosition(temporal_patch=2, stride=4)
    assert position.frame_offset(chunk(3, [6.0, 6.5, 7.0, 7.5])) == 12
    assert position.frame_offset(chunk(5, [10.0])) == 20  # chunk 4 was dropped: a gap, never a reuse


def test_reusing_a_frame_number_fails_loudly():
    position = StreamPosition(temporal_patch=2, stride=4)
    position.frame_offset(chunk(3, [6.0, 6.5]))
    with pytest.raises(AssertionError, match="not after frame"):
        position.frame_offset(chunk(2, [4.0, 4.5]))
    with pytest.raises(AssertionError, match="more than 4"):
        position.frame_offset(chunk(7, [0.0] * 5))


def test_a_resumed_recording_skips_what_memory_holds_and_recovers_the_time_origin():
    # The memory's newest token is frame 6 (chunk 1, its third frame, media 3.0 s) at Unix 1003.0, and the
    # newest time it ever got is 1003.5: chunks 0 and 1 are held, chunk 2 is new.
    position = StreamPosition(temporal_patch=2, stride=4, head_time=1003.5, anchor=(6, 1003.0))
    assert position.already_held(chunk(0, [0.0, 0.5, 1.0, 1.5]))
    assert position.origin is None
    assert position.already_held(chunk(1, [2.0, 2.5, 3.0, 3.5]))
    assert position.origin == 1000.0
    assert not position.already_held(chunk(2, [4.0, 4.5, 5.0, 5.5]))
    assert not position.already_held(chunk(3, [6.0, 6.5]))


def test_a_recording_that_changed_under_the_memory_is_refused():
    position = StreamPosition(temporal_patch=2, stride=4, head_time=1003.5, anchor=(6, 1003.0))
    with pytest.raises(ResumeError, match="recording or its sampling changed"):
        position.already_held(chunk(2, [4.0]))  # chunk 1, which holds frame 6, never came
