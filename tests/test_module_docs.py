"""Every module opens with a docstring whose first line, a sentence of its own, says what the module holds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "cli", "common", "flexselect", "lab", "streams")


def summary_problem(source: str) -> str | None:
    """Why a module's docstring does not open with a one-line summary sentence (None: it does)."""
    doc = ast.get_docstring(ast.parse(source), clean=False)
    if doc is None:
        return "no module docstring"
    lines = doc.splitlines()
    first = lines[0].strip()
    if not first:
        return "the first line is empty"
    if not (first[0].isupper() or first[0].isdigit() or first[0] in "`'\""):
        return "the first line does not start a sentence"
    if not first.endswith("."):
        return "the first line is not a whole sentence (it does not end with a full stop)"
    if len(lines) > 1 and lines[1].strip():
        return "the summary runs on to the second line (leave it blank after the first)"
    return None


def modules() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_every_module_opens_with_a_one_line_summary_sentence():
    problems = {
        str(path.relative_to(ROOT)): problem
        for path in modules()
        if (problem := summary_problem(path.read_text())) is not None
    }
    assert problems == {}


def test_the_scan_covers_every_package():
    assert {path.relative_to(ROOT).parts[0] for path in modules()} == set(PACKAGES)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import os\n", "no module docstring"),
        ('"""\nThe clock."""\n', "the first line is empty"),
        ('"""the clock."""\n', "the first line does not start a sentence"),
        (
            '"""The clock and\nits ticks."""\n',
            "the first line is not a whole sentence (it does not end with a full stop)",
        ),
        (
            '"""The clock and a.\nticks."""\n',
            "the summary runs on to the second line (leave it blank after the first)",
        ),
        ('"""The clock.\n\nMore about it."""\n', None),
        ('"""`clock`: wall time."""\n', None),
    ],
)
def test_summary_problem_names_what_is_wrong(source: str, problem: str | None):
    assert summary_problem(source) == problem
