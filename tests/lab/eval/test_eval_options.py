"""Option extraction on the answer styles models produce: letters, letters with text, text, refusals."""

from __future__ import annotations

import pytest

from lab.eval.options import Choice, extract_choice

OPTIONS = {"A": "a red car", "B": "a blue bicycle", "C": "two dogs", "D": "nothing happens"}


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(C)", "C"),
        ("C.", "C"),
        (" D\n", "D"),
        ("**A**", "A"),
    ],
)
def test_a_letter_alone_is_that_option(answer, letter):
    assert extract_choice(answer, OPTIONS) == Choice(letter, "letter")


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B. a blue bicycle", "B"),
        ("D) nothing happens", "D"),
        ("C: two dogs", "C"),
        ("(A) a red car", "A"),
        ("The answer is C.", "C"),
        ("The best answer is: A", "A"),
        ("Answer: D", "D"),
        ("Best option: (B", "B"),
        ("The correct option is B because the man rides it.", "B"),
        ("I think the answer is (A) since the car is red.", "A"),
        ("It is C", "C"),
    ],
)
def test_a_letter_with_text_is_that_letter(answer, letter):
    assert extract_choice(answer, OPTIONS) == Choice(letter, "letter")


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("two dogs", "C"),
        ("Two dogs.", "C"),
        ("The video shows two dogs playing.", "C"),
        ("A man rides a blue bicycle.", "B"),
    ],
)
def test_option_text_alone_is_matched_to_its_letter(answer, letter):
    assert extract_choice(answer, OPTIONS) == Choice(letter, "text")


@pytest.mark.parametrize(
    "answer",
    [
        "I'm sorry, I cannot determine the answer from the video.",
        "I don't know.",
        "None of the options is correct.",
        "Unable to tell; maybe B?",
        "",
    ],
)
def test_a_refusal_chooses_no_option(answer):
    assert extract_choice(answer, OPTIONS) == Choice(None)


def test_text_naming_two_options_chooses_none():
    assert extract_choice("two dogs and nothing happens", OPTIONS) == Choice(None)


def test_a_letter_that_is_not_an_option_chooses_none():
    assert extract_choice("E", OPTIONS) == Choice(None)


def test_the_longest_matching_option_text_wins_over_one_it_contains():
    options = {"A": "red", "B": "dark red", "C": "blue"}
    assert extract_choice("it was dark red", options) == Choice("B", "text")


def test_the_article_a_is_not_read_as_option_a():
    assert extract_choice("A dog sits under the table", {"A": "cat", "B": "dog"}) == Choice("B", "text")
