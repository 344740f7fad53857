"""Question/answer pairs about needle events, asked only where the answer is unambiguous."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.synth.layout import third_of
from streams.synth.vocab import COUNT_WORDS, QUESTION_KINDS, SHAPES, WHEN_WORDS, question_text
from streams.synth.world import Needle


@dataclass(frozen=True, slots=True)
class Question:
    """One question with its answer, the needles it is about and the time span that holds the evidence."""

    id: int
    kind: str
    question: str
    answer: str
    needle_ids: tuple[int, ...]
    evidence: tuple[float, float]  # (start_s, end_s) covering every needle in needle_ids

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "kind": self.kind,
            "question": self.question,
            "answer": self.answer,
            "needle_ids": list(self.needle_ids),
            "evidence": list(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Question:
        """Inverse of `to_dict`."""
        return cls(
            id=int(data["id"]),
            kind=str(data["kind"]),
            question=str(data["question"]),
            answer=str(data["answer"]),
            needle_ids=tuple(int(i) for i in data["needle_ids"]),
            evidence=(float(data["evidence"][0]), float(data["evidence"][1])),
        )


def ask(kind: str, about: Sequence[Needle], frame_count: int, qid: int = 0) -> Question:
    """The question of `kind` about `about` (one needle; for `count`, every needle of one shape).

    The caller is responsible for the question being unambiguous in its video (see `video_questions`).
    """
    if kind not in QUESTION_KINDS:
        raise ValueError(f"unknown question kind {kind!r}; expected one of {QUESTION_KINDS}")
    if not about:
        raise ValueError("a question needs at least one needle")
    n = about[0]
    if kind == "count":
        if len(about) > len(COUNT_WORDS) or any(m.shape != n.shape for m in about):
            raise ValueError("count questions need 1..4 needles of one shape")
        answer = COUNT_WORDS[len(about) - 1]
    elif kind == "color":
        answer = n.color
    elif kind == "shape":
        answer = n.shape
    elif kind == "place":
        answer = n.quadrant
    else:  # when
        third = third_of(n.first_frame, frame_count)
        if third != third_of(n.last_frame, frame_count):
            raise ValueError(f"needle {n.id} spans two thirds of the video")
        answer = WHEN_WORDS[third]
    return Question(
        id=qid,
        kind=kind,
        question=question_text(kind, n.color, n.shape),
        answer=answer,
        needle_ids=tuple(m.id for m in about),
        evidence=(min(m.start_s for m in about), max(m.end_s for m in about)),
    )


def video_questions(
    needles: Sequence[Needle], frame_count: int, kinds: Sequence[str] | None = None
) -> list[Question]:
    """Every unambiguous question about `needles` (optionally only of `kinds`), numbered from 0.

    color: the shape occurs once; shape: the colour occurs once; place and when: the (colour, shape) pair
    occurs once (when: and the needle lies within one third of the video); count: 1..4 needles of a shape.
    """
    colors = Counter(n.color for n in needles)
    shapes = Counter(n.shape for n in needles)
    pairs = Counter((n.color, n.shape) for n in needles)
    asked: list[tuple[str, list[Needle]]] = []
    for n in sorted(needles, key=lambda m: (m.first_frame, m.id)):
        if colors[n.color] == 1:
            asked.append(("shape", [n]))
        if pairs[(n.color, n.shape)] == 1:
            asked.append(("place", [n]))
            if third_of(n.first_frame, frame_count) == third_of(n.last_frame, frame_count):
                asked.append(("when", [n]))
    for shape in SHAPES:
        same = [n for n in needles if n.shape == shape]
        if shapes[shape] == 1:
            asked.append(("color", same))
    for shape in SHAPES:
        same = sorted((n for n in needles if n.shape == shape), key=lambda m: m.id)
        if 1 <= len(same) <= len(COUNT_WORDS):
            asked.append(("count", same))
    if kinds is not None:
        asked = [a for a in asked if a[0] in kinds]
    return [ask(kind, about, frame_count, qid) for qid, (kind, about) in enumerate(asked)]
