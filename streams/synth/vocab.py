"""The closed vocabulary of the synthetic world: attribute names, question templates and every word used.

Questions and answers are lower-case words separated by single spaces, with `?` as its own word, so a
word-level tokenizer built from `WORDS` covers every question and answer the world can produce.
"""

from __future__ import annotations

from types import MappingProxyType

# Saturated needle colours (RGB). Backgrounds and distractors are near-grey, so a pixel with high
# saturation belongs to a needle, and its nearest palette entry names the colour.
COLORS: MappingProxyType[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (230, 25, 25),
        "green": (25, 200, 40),
        "blue": (40, 70, 235),
        "yellow": (235, 215, 20),
        "magenta": (215, 30, 215),
        "cyan": (20, 205, 215),
        "orange": (245, 125, 15),
    }
)
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

# Needle shapes, drawn to fill their cell so that each 14 px quarter of a 28 px cell looks different
# (pairwise, at least 20 % of a cell's pixels differ).
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross", "ring")
PLURALS: MappingProxyType[str, str] = MappingProxyType(
    {
        "square": "squares",
        "circle": "circles",
        "triangle": "triangles",
        "cross": "crosses",
        "ring": "rings",
    }
)

# Quadrants of the frame, in (row, column) order: index = 2 * bottom + right.
QUADRANTS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three", "four")
# Thirds of the video (or clip), in order.
WHEN_WORDS: tuple[str, ...] = ("beginning", "middle", "end")

QUESTION_KINDS: tuple[str, ...] = ("color", "shape", "place", "count", "when")
TEMPLATES: MappingProxyType[str, str] = MappingProxyType(
    {
        "color": "what color was the {shape} ?",
        "shape": "what shape was the {color} object ?",
        "place": "where did the {color} {shape} appear ?",
        "count": "how many {shapes} appeared ?",
        "when": "when did the {color} {shape} appear ?",
    }
)
# Every possible answer per question kind (answers are one or two words).
ANSWERS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "color": COLOR_NAMES,
        "shape": SHAPES,
        "place": QUADRANTS,
        "count": COUNT_WORDS,
        "when": WHEN_WORDS,
    }
)


def _vocabulary() -> tuple[str, ...]:
    words: list[str] = []
    fixed = [w for t in TEMPLATES.values() for w in t.split() if not w.startswith("{")]
    pieces = [*fixed, *COLOR_NAMES, *SHAPES, *PLURALS.values(), *(w for a in ANSWERS.values() for w in a)]
    for piece in pieces:
        for word in piece.split():
            if word not in words:
                words.append(word)
    return tuple(words)


WORDS: tuple[str, ...] = _vocabulary()


def words(text: str) -> list[str]:
    """Split a question or answer into vocabulary words; raises ValueError on an unknown word."""
    out = text.split()
    unknown = [w for w in out if w not in WORDS]
    if unknown:
        raise ValueError(f"not in the synthetic vocabulary: {unknown}")
    return out


def question_text(kind: str, color: str = "", shape: str = "") -> str:
    """The question of `kind` about a needle of `color`/`shape` (count questions use the shape only)."""
    if kind not in TEMPLATES:
        raise ValueError(f"unknown question kind {kind!r}; expected one of {QUESTION_KINDS}")
    return TEMPLATES[kind].format(color=color, shape=shape, shapes=PLURALS.get(shape, ""))
