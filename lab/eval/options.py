"""Which option a free-form answer chose: the letter patterns official scorers look for, then option text.

The official scorers differ: VideoMME and LVBench (the paper's lmms-eval fork, `extract_characters_regex`)
strip "The best answer is"-style prefixes and take the first capital A-D anywhere; LongVideoBench
(MMMU-style) looks for "(X)", then "X ", then "X.", then option text in answers longer than five words, and
guesses at random when nothing matches; MLVU takes the character before the first ")". All agree on the
styles models produce (a letter alone, "(B)", "B. text", "The answer is B"). Here every benchmark shares one
deterministic order that also reads option text alone and never guesses: an answer that names no option
(a refusal) scores as wrong.

Deterministic replies the paper's code reads differently (docs/eval.md, "Option extraction"):

    reply                   here   paper's VideoMME/LVBench code          paper's MLVU code
    "Answer: C"             C      A (the capital A of "Answer")          none ("Answer: C" is not a letter)
    "Best option: (C) ring" C      B (its prefix list misses "Best option:")  C
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Method = Literal["letter", "text"]

REFUSALS = re.compile(
    r"\b(sorry|cannot|can't|can not|unable|not possible|impossible to|no way to|not enough information|"
    r"not sure|none of the|don't know|do not know|unanswerable)\b",
    re.IGNORECASE,
)
# Currency written as a symbol or a code before the amount, or as a word or code after it: "$5", "US$5",
# "USD 5", "5 dollars" and "5 USD" all become "5" when option text is compared.
_CURRENCY_BEFORE = re.compile(
    r"(?:\b(?:us|usd|eur|gbp|jpy|cny|rmb)\s*)?[$€£¥₹₩₽]\s*(?=\d)|\b(?:usd|eur|gbp|jpy|cny|rmb)\s*(?=\d)"
)
_CURRENCY_AFTER = re.compile(
    r"(?<=\d)\s*(?:[$€£¥₹₩₽]|\b(?:dollars?|usd|euros?|eur|pounds?|gbp|yen|jpy|yuan|rmb|cny)\b)"
)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


@dataclass(frozen=True)
class Choice:
    """The extracted option: its letter (None when the answer names none) and how it was found."""

    letter: str | None
    method: Method | None = None


def extract_choice(answer: str, options: dict[str, str]) -> Choice:
    """The option `answer` chose among `options` (letter -> text), or `Choice(None)` for none or a refusal.

    Order: an answer that is only a letter ("b", "(B)", "B."); an answer that is exactly one option's text
    (so an option reading "I'm not sure" or "A Big Dog" is that option, not a refusal or letter A); "(B)"
    anywhere; a leading "B" followed by nothing or punctuation; "answer is B" / "Best option: (B"; then,
    unless the answer is a refusal, the first standalone capital letter that is an option (the article in
    "A man ..." is not one) and finally the text of exactly one option. Option text is compared without
    case, punctuation, thousands separators or currency marks ("$5" = "5 dollars" = "USD 5").
    """
    letters = "".join(options)
    text = answer.replace("*", "").replace("`", "").strip()
    if not text or not letters:
        return Choice(None)
    if match := re.fullmatch(rf"\(?([{letters}])\)?[.:)]?", text, re.IGNORECASE):
        return Choice(match.group(1).upper(), "letter")
    if letter := _exact_text(text, options):
        return Choice(letter, "text")
    for pattern in _explicit_patterns(letters):
        if match := pattern.search(text):
            return Choice(match.group(1), "letter")
    if REFUSALS.search(text):
        return Choice(None)
    if letter := _standalone_letter(text, letters):
        return Choice(letter, "letter")
    letter = _by_text(text, options)
    return Choice(letter, "text") if letter else Choice(None)


def _explicit_patterns(letters: str) -> tuple[re.Pattern[str], ...]:
    return (
        re.compile(rf"\(([{letters}])\)"),  # "(B)", "I think (B) red"
        re.compile(rf"^([{letters}])(?=\s*(?:$|[.):,\]\-]))"),  # "B.", "B) red", "B: red", "B - red"
        # "The best answer is B", "answer: B", "Best option: (B", "Option B"
        re.compile(rf"(?i:answer|option|choice)\s*(?:(?i:is)\s*)?:?\s*\(?([{letters}])(?![A-Za-z])"),
    )


def _standalone_letter(text: str, letters: str) -> str | None:
    """The first capital option letter standing alone as a word; "A" before a lowercase word is an article."""
    for match in re.finditer(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", text):
        if match.group(1) == "A" and re.match(r"\s+[a-z]", text[match.end() :]):
            continue
        return match.group(1)
    return None


def _exact_text(text: str, options: dict[str, str]) -> str | None:
    """The one option whose whole text is the whole answer (compared as `_normalise` does)."""
    answer = _normalise(text)
    found = [letter for letter, option in options.items() if answer and _normalise(option) == answer]
    return found[0] if len(found) == 1 else None


def _by_text(text: str, options: dict[str, str]) -> str | None:
    """The one option whose text occurs as whole words in the answer (the longest wins over one inside it)."""
    haystack = f" {_normalise(text)} "
    found = {
        letter: _normalise(option)
        for letter, option in options.items()
        if _normalise(option) and f" {_normalise(option)} " in haystack
    }
    # Drop options whose text is only part of a longer matching option ("red" inside "dark red").
    kept = [k for k, t in found.items() if not any(t != o and f" {t} " in f" {o} " for o in found.values())]
    return kept[0] if len(kept) == 1 else None


def _normalise(text: str) -> str:
    """Lower case, no thousands separators or currency marks, punctuation as spaces, single spaces."""
    text = _THOUSANDS.sub("", text.lower())
    text = _CURRENCY_AFTER.sub("", _CURRENCY_BEFORE.sub("", text))
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())
