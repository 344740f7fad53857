"""Pixels: needles are visible exactly where and when the ground truth says; the haystack is grey."""

from __future__ import annotations

import itertools

import numpy as np

from streams.synth import (
    SHAPES,
    WorldConfig,
    WorldRenderer,
    color_labels,
    generate_world,
    render_frames,
    shape_mask,
)


def test_needle_pixels_appear_exactly_in_their_frames_and_boxes(expected_labels, small):
    world = generate_world(small)
    frames = np.stack(list(render_frames(world)))
    assert np.array_equal(color_labels(frames), expected_labels(world.needles, frames.shape[:3]))


def test_needle_pixels_match_for_free_placement_and_long_needles(expected_labels):
    cfg = WorldConfig(
        seconds=12, fps=3, width=96, height=64, needles=5, seed=11, cell=None, max_needle_seconds=3
    )
    world = generate_world(cfg)
    frames = np.stack(list(render_frames(world)))
    assert np.array_equal(color_labels(frames), expected_labels(world.needles, frames.shape[:3]))


def test_backgrounds_and_distractors_never_use_needle_colours():
    world = generate_world(
        WorldConfig(seconds=40, fps=2, width=112, height=112, needles=0, distractors=4, seed=4)
    )
    frames = np.stack(list(render_frames(world))).astype(np.int16)
    assert (color_labels(frames) == -1).all()
    assert (frames.max(axis=-1) - frames.min(axis=-1)).max() < 40


def test_distractors_are_drawn_and_move():
    world = generate_world(WorldConfig(seconds=10, fps=2, width=112, height=112, needles=0, seed=4))
    bare = generate_world(
        WorldConfig(seconds=10, fps=2, width=112, height=112, needles=0, seed=4, distractors=0)
    )
    with_d, without = np.stack(list(render_frames(world))), np.stack(list(render_frames(bare)))
    changed = (with_d != without).any(axis=-1)
    assert changed.any(axis=(1, 2)).all()
    assert not np.array_equal(changed[0], changed[-1])


def test_background_changes_slowly():
    world = generate_world(WorldConfig(seconds=120, fps=1, width=112, height=112, needles=0, distractors=0))
    frames = [f.astype(np.float32) for f in render_frames(world)]
    step = np.mean([np.abs(a - b).mean() for a, b in itertools.pairwise(frames)])
    far = np.abs(frames[0] - frames[-1]).mean()
    assert step < 5 < far


def test_streaming_is_lazy_and_matches_random_access():
    world = generate_world(WorldConfig(seconds=3600, fps=1, needles=20, seed=1))
    renderer = WorldRenderer(world)
    stream = renderer.frames(1800)
    first = list(itertools.islice(stream, 3))
    assert all(np.array_equal(f, renderer.frame(1800 + i)) for i, f in enumerate(first))
    assert renderer.frame(3599).shape == (224, 224, 3)


def test_shapes_differ_strongly_within_one_cell():
    masks = {s: shape_mask(s, 28) for s in SHAPES}
    for a, b in itertools.combinations(SHAPES, 2):
        assert (masks[a] != masks[b]).mean() > 0.2, (a, b)
    for s in SHAPES:
        assert 0.4 < masks[s].mean() < 0.9
