"""The selector's training stays apart from the toy model and the needle tools: none of it imports them."""

from __future__ import annotations

import ast
from pathlib import Path


def test_the_selector_recipes_and_data_import_nothing_from_the_toy():
    root = Path(__file__).resolve().parents[3] / "lab" / "selector"
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for path in root.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.startswith(("lab.toy", "lab.needle"))}
