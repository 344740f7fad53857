"""World layout: deterministic per seed, needles on the grid inside a quadrant, config validation."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from streams.synth import QUADRANTS, WorldConfig, generate_world, render_frames
from streams.synth.layout import quadrant_of


def test_same_seed_gives_identical_needles_and_frames(small):
    a, b = generate_world(small), generate_world(small)
    assert a.needles == b.needles
    assert np.array_equal(np.stack(list(render_frames(a))), np.stack(list(render_frames(b))))


def test_different_seed_gives_different_needles_and_frames(small):
    a, b = generate_world(small), generate_world(dataclasses.replace(small, seed=small.seed + 1))
    assert a.needles != b.needles
    assert not np.array_equal(next(render_frames(a)), next(render_frames(b)))


def test_changing_the_distractor_count_keeps_the_needles(small):
    a, b = generate_world(small), generate_world(dataclasses.replace(small, distractors=0))
    assert a.needles == b.needles


def test_needles_lie_on_the_cell_grid_inside_their_quadrant():
    cfg = WorldConfig(seconds=200, fps=1, needles=30, seed=5)
    for n in generate_world(cfg).needles:
        x, y, w, h = n.box
        assert x % 28 == 0 and y % 28 == 0 and w == h and w in (28, 56)
        assert n.cell == (y // 28, x // 28)
        assert n.quadrant == quadrant_of(n.box, 224, 224)


def test_every_quadrant_and_size_occurs():
    needles = generate_world(WorldConfig(seconds=200, fps=1, needles=30, seed=5)).needles
    assert {n.quadrant for n in needles} == set(QUADRANTS)
    assert {n.box[2] for n in needles} == {28, 56}


def test_free_placement_keeps_needles_inside_their_quadrant_within_the_pixel_range():
    cfg = WorldConfig(
        seconds=100, fps=1, width=120, height=90, needles=20, seed=2, cell=None, needle_px=(10, 30)
    )
    for n in generate_world(cfg).needles:
        assert 10 <= n.box[2] <= 30 and n.cell is None
        assert n.quadrant == quadrant_of(n.box, 90, 120)


def test_needles_never_overlap_in_time_and_last_between_the_duration_bounds():
    cfg = WorldConfig(seconds=60, fps=5, needles=10, seed=7, min_needle_seconds=0.4, max_needle_seconds=2.0)
    needles = sorted(generate_world(cfg).needles, key=lambda n: n.first_frame)
    for n in needles:
        assert 2 <= n.last_frame - n.first_frame + 1 <= 10
    for a, b in itertools.pairwise(needles):
        assert a.last_frame < b.first_frame
    assert needles[-1].last_frame < cfg.frame_count


def test_a_zero_second_minimum_still_gives_needles_of_at_least_one_frame():
    cfg = WorldConfig(seconds=60, fps=1, needles=8, seed=1, max_needle_seconds=0.0)
    assert all(n.first_frame == n.last_frame for n in generate_world(cfg).needles)


def test_needle_times_follow_frames_and_fps(small):
    for n in generate_world(small).needles:
        assert n.start_s == n.first_frame / 4 and n.end_s == (n.last_frame + 1) / 4


def test_colour_shape_pairs_are_distinct_and_colours_balanced():
    needles = generate_world(WorldConfig(seconds=100, fps=1, needles=14, seed=9)).needles
    assert len({(n.color, n.shape) for n in needles}) == 14
    counts = np.unique([n.color for n in needles], return_counts=True)[1]
    assert list(counts) == [2] * 7


def test_frame_count_is_seconds_times_fps_rounded():
    assert WorldConfig(seconds=3600, fps=1).frame_count == 3600
    assert WorldConfig(seconds=10, fps=29.97).frame_count == 300
    assert WorldConfig(seconds=0.1, fps=1, needles=1).frame_count == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seconds": 0}, "seconds must be positive"),
        ({"fps": -1}, "fps must be positive"),
        ({"width": 100}, "not a multiple of the 28px cell"),
        ({"width": 28, "height": 28}, "no needle size fits"),
        ({"needles": 40, "seconds": 10}, "40 needles do not fit in 20 frames"),
        ({"min_needle_seconds": 2, "max_needle_seconds": 1}, "min_needle_seconds"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        WorldConfig(**{"seconds": 10.0, **changes})
