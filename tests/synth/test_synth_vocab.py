"""The closed vocabulary: every question and answer word is in WORDS, once."""

from __future__ import annotations

import pytest

from streams.synth import ANSWERS, QUESTION_KINDS, SHAPES, WORDS, question_text, words
from streams.synth.vocab import TEMPLATES


def test_words_are_unique_lower_case_single_tokens():
    assert len(WORDS) == len(set(WORDS))
    assert all(w == w.lower() and w.strip() and " " not in w for w in WORDS)
    assert "?" in WORDS


def test_every_template_and_answer_word_is_in_words():
    for kind in QUESTION_KINDS:
        for shape in SHAPES:
            words(question_text(kind, "red", shape))
        for answer in ANSWERS[kind]:
            assert 1 <= len(words(answer)) <= 2


def test_templates_and_answers_cover_exactly_the_question_kinds():
    assert set(TEMPLATES) == set(ANSWERS) == set(QUESTION_KINDS)


def test_question_text_fills_each_template():
    assert question_text("color", shape="square") == "what color was the square ?"
    assert question_text("shape", color="red") == "what shape was the red object ?"
    assert question_text("place", "red", "circle") == "where did the red circle appear ?"
    assert question_text("count", shape="cross") == "how many crosses appeared ?"
    assert question_text("when", "blue", "ring") == "when did the blue ring appear ?"


def test_words_rejects_an_unknown_word():
    with pytest.raises(ValueError, match="purple"):
        words("what shape was the purple object ?")


def test_question_text_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="size"):
        question_text("size", "red", "square")
