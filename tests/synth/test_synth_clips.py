"""Training clips: right shapes, deterministic per generator state, answers true to their pixels."""

from __future__ import annotations

import numpy as np
import pytest

from streams.synth import ANSWERS, QUESTION_KINDS, ClipSampler, color_labels, sample_clip, words
from streams.synth.layout import third_of
from streams.synth.world import make_needle


@pytest.fixture(scope="module")
def sampler() -> ClipSampler:
    return ClipSampler(16, (112, 112))


def test_clip_has_the_requested_frames_and_a_vocabulary_question(sampler):
    clip = sampler(np.random.default_rng(0))
    assert clip.frames.shape == (16, 112, 112, 3) and clip.frames.dtype == np.uint8
    assert clip.kind in QUESTION_KINDS and clip.answer in ANSWERS[clip.kind]
    words(clip.question), words(clip.answer)


def test_same_generator_seed_gives_the_same_clip(sampler):
    a, b = sampler(np.random.default_rng(5)), sampler(np.random.default_rng(5))
    assert np.array_equal(a.frames, b.frames) and a[1:] == b[1:]
    assert not np.array_equal(a.frames, sampler(np.random.default_rng(6)).frames)


def test_needle_pixels_match_the_clip_needles(sampler, expected_labels):
    rng = np.random.default_rng(1)
    for _ in range(20):
        clip = sampler(rng)
        assert np.array_equal(color_labels(clip.frames), expected_labels(clip.needles, clip.frames.shape[:3]))


@pytest.mark.parametrize("size", [(56, 56), (112, 112)])
def test_answers_agree_with_the_needles_and_are_unambiguous(size):
    rng, sampler = np.random.default_rng(2), ClipSampler(8, size)
    for _ in range(300):
        clip = sampler(rng)
        about = [n for n in clip.needles if n.id in clip.needle_ids]
        target = about[0]
        assert len({n.color for n in clip.needles}) == len(clip.needles)
        if clip.kind == "color":
            assert [n.shape for n in clip.needles].count(target.shape) == 1 and clip.answer == target.color
        elif clip.kind == "shape":
            assert clip.answer == target.shape and f"the {target.color} object" in clip.question
        elif clip.kind == "place":
            assert clip.answer == target.quadrant and f"the {target.color} {target.shape}" in clip.question
        elif clip.kind == "when":
            assert third_of(target.first_frame, 8) == third_of(target.last_frame, 8)
            assert clip.answer == ("beginning", "middle", "end")[third_of(target.first_frame, 8)]
        else:
            assert about == [n for n in clip.needles if n.shape == target.shape]
            assert clip.answer == ("one", "two", "three", "four")[len(about) - 1]


def test_every_answer_of_every_kind_is_sampled():
    rng, sampler = np.random.default_rng(3), ClipSampler(8, (56, 56))
    seen = {(c.kind, c.answer) for c in (sampler(rng) for _ in range(1500))}
    assert seen == {(kind, answer) for kind in QUESTION_KINDS for answer in ANSWERS[kind]}


def test_small_frames_only_get_one_cell_needles():
    clip = sample_clip(np.random.default_rng(4), frames=8, size=(56, 56), kinds=("count",))
    assert clip.kind == "count" and all(n.box[2] == 28 for n in clip.needles)


def test_kinds_option_restricts_the_question_kinds():
    rng, sampler = np.random.default_rng(4), ClipSampler(8, (56, 56), kinds=("color", "place"))
    assert {sampler(rng).kind for _ in range(50)} == {"color", "place"}


def test_token_mask_marks_the_tokens_a_needle_touches():
    clip = sample_clip(np.random.default_rng(0), frames=8, size=(112, 112))
    one = make_needle(0, "red", "circle", (28, 56, 56, 56), 3, 4, 2.0, 28, "bottom left")
    clip = clip._replace(needles=(one,), needle_ids=(0,))
    expected = np.zeros((4, 4, 4), dtype=bool)
    expected[1:3, 2:4, 1:3] = True
    assert np.array_equal(clip.token_mask(), expected)
    assert clip.mask().sum() == 2 * 56 * 56


def test_many_clips_come_out_with_consistent_shapes(sampler):
    rng = np.random.default_rng(9)
    clips = [sampler(rng) for _ in range(200)]
    assert {c.frames.shape for c in clips} == {(16, 112, 112, 3)}
    assert all(c.token_mask().shape == (8, 4, 4) and c.token_mask(evidence_only=True).any() for c in clips)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": (100, 100)}, "not a multiple"),
        ({"kinds": ("size",)}, "kinds"),
        ({"max_needles": 8}, "max_needles"),
        ({"size": (28, 28)}, "no needle size fits"),
        ({"frames": 2}, "at least 3 frames"),
    ],
)
def test_sampler_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        ClipSampler(**options)
