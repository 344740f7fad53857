"""Positions of retained tokens over long spans: exact where they fit, long gaps compressed where not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexselect.adapters import load_adapter
from flexselect.positions import capped_gaps


def test_gaps_longer_than_the_fitting_cap_shrink_and_shorter_ones_stay():
    offsets = torch.tensor([[100, 102, 104, 5000, 5002, 90000], [0, 1, 0, 1, 0, 1], [1, 0, 1, 0, 1, 0]])
    laid, extent = capped_gaps(offsets, room=40)
    # gaps 2, 2, 4896, 2, 84998: the largest cap c with 2 + 2 + c + 2 + c + 1 <= 40 is 16
    assert laid[0].tolist() == [0, 2, 4, 20, 22, 38]
    assert extent == 39
    assert torch.equal(laid[1:], offsets[1:])


def test_the_compressed_span_fits_its_room_and_keeps_the_order():
    offsets = torch.tensor([[0, 0, 4, 4, 400, 404, 80000, 80004]])
    laid, extent = capped_gaps(offsets, room=64)
    assert extent <= 64
    assert laid[0].tolist() == sorted(laid[0].tolist())
    assert laid[0, 1] == laid[0, 0] and laid[0, 3] - laid[0, 2] == 0  # tokens of one step share it
    assert laid[0, 5] - laid[0, 4] == 4 and laid[0, 7] - laid[0, 6] == 4  # spacing inside a burst kept


def test_more_distinct_positions_than_the_room_is_an_error():
    with pytest.raises(ValueError, match="exceed the model's trained range"):
        capped_gaps(torch.arange(0, 100, 10).view(1, -1), room=5)


def test_the_trained_range_comes_from_the_checkpoint_and_stays_within_its_positions(tiny_dirs):
    adapter = load_adapter(tiny_dirs["qwen2_5_vl"])
    assert adapter.trained_positions == adapter.max_positions  # the default: what the config declares
    adapter.config.flexselect_trained_positions = 100
    assert adapter.trained_positions == 100
    adapter.config.flexselect_trained_positions = 10 * adapter.max_positions
    assert adapter.trained_positions == adapter.max_positions


def test_a_memory_longer_than_the_trained_range_is_answered_with_its_long_gaps_compressed(tiny_dirs):
    adapter = load_adapter(tiny_dirs["qwen2_5_vl"])
    frames = np.zeros((8, 56, 56, 3), dtype=np.uint8)
    times = np.array([0, 0.5, 1, 1.5, 3600, 3600.5, 86400, 86400.5])  # a second, an hour, a day later
    tokens = adapter.encode(frames, times, fps=2.0)
    prompt = adapter.prompt("why?")
    p, t = len(prompt.prefix_ids), len(prompt.suffix_ids)
    adapter.config.flexselect_trained_positions = p + t + 32
    seq = adapter.build_sequence(prompt, tokens)
    visual = seq.position_ids[0, 0, seq.visual_slice] - p
    steps = visual.view(4, -1)[:, 0].tolist()  # one temporal position per 2-frame step
    assert steps[1] - steps[0] == 2  # one second apart: kept exactly (two positions per second)
    assert steps == sorted(steps) and steps[-1] < 32  # the hour and the day shrank to fit
    assert int(seq.position_ids.max()) < p + t + 32
