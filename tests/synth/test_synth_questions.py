"""Questions: answers agree with the ground truth and every question is unambiguous."""

from __future__ import annotations

import pytest

from streams.synth import (
    COUNT_WORDS,
    WHEN_WORDS,
    Needle,
    WorldConfig,
    ask,
    generate_world,
    video_questions,
    words,
)
from streams.synth.world import make_needle


def needle(i: int, color: str, shape: str, first: int, last: int, box=(0, 0, 28, 28), quadrant="top left"):
    return make_needle(i, color, shape, box, first, last, 1.0, 28, quadrant)


def independent_answer(kind: str, needles: list[Needle], frame_count: int) -> str:
    n = needles[0]
    return {
        "color": n.color,
        "shape": n.shape,
        "place": n.quadrant,
        "count": COUNT_WORDS[len(needles) - 1],
        "when": WHEN_WORDS[n.first_frame * 3 // frame_count],
    }[kind]


@pytest.mark.parametrize("seed", range(6))
def test_answers_agree_with_the_ground_truth_and_refer_to_exactly_their_needles(seed):
    world = generate_world(WorldConfig(seconds=300, fps=1, needles=3 + 2 * seed, seed=seed))
    by_id = {n.id: n for n in world.needles}
    for q in video_questions(world.needles, world.frame_count):
        about = [by_id[i] for i in q.needle_ids]
        assert q.answer == independent_answer(q.kind, about, world.frame_count)
        referred = {
            "color": [n for n in world.needles if f"the {n.shape} " in q.question],
            "shape": [n for n in world.needles if f"the {n.color} object" in q.question],
            "place": [n for n in world.needles if f"the {n.color} {n.shape} " in q.question],
            "when": [n for n in world.needles if f"the {n.color} {n.shape} " in q.question],
            "count": [n for n in world.needles if f"many {n.shape}" in q.question],
        }[q.kind]
        assert sorted(n.id for n in referred) == sorted(q.needle_ids)
        assert q.evidence == (min(n.start_s for n in about), max(n.end_s for n in about))
        words(q.question), words(q.answer)


def test_a_fixed_layout_gives_exactly_these_questions():
    needles = [
        needle(0, "red", "square", 0, 1),
        needle(1, "blue", "square", 5, 5, (56, 84, 28, 28), "bottom right"),
        needle(2, "red", "circle", 4, 8),
    ]
    got = [(q.kind, q.question, q.answer, q.needle_ids) for q in video_questions(needles, 9)]
    assert got == [
        ("place", "where did the red square appear ?", "top left", (0,)),
        ("when", "when did the red square appear ?", "beginning", (0,)),
        ("place", "where did the red circle appear ?", "top left", (2,)),
        ("shape", "what shape was the blue object ?", "square", (1,)),
        ("place", "where did the blue square appear ?", "bottom right", (1,)),
        ("when", "when did the blue square appear ?", "middle", (1,)),
        ("color", "what color was the circle ?", "red", (2,)),
        ("count", "how many squares appeared ?", "two", (0, 1)),
        ("count", "how many circles appeared ?", "one", (2,)),
    ]


def test_no_count_question_for_more_than_four_of_a_shape():
    needles = [needle(i, c, "cross", i, i) for i, c in enumerate(["red", "green", "blue", "cyan", "orange"])]
    assert [q for q in video_questions(needles, 5) if q.kind == "count"] == []


def test_kinds_filter_keeps_only_those_kinds():
    world = generate_world(WorldConfig(seconds=100, fps=1, needles=5, seed=2))
    assert {q.kind for q in video_questions(world.needles, world.frame_count, kinds=("count",))} == {"count"}


def test_ask_refuses_a_when_question_spanning_two_thirds():
    with pytest.raises(ValueError, match="spans two thirds"):
        ask("when", [needle(0, "red", "square", 2, 3)], 9)
