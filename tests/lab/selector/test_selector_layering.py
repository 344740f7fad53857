"""FlexSelect-Lite stays apart: its training is model math (no service code), its agent side no toy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def test_the_selector_packages_import_no_service_or_stream_code():
    code = "import sys, flexselect.lite, flexselect.training.distill; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    assert not loaded & {"agent", "streams", "av", "redis", "aiomqtt"}  # asyncio comes with transformers


def test_the_selector_recipes_and_data_import_nothing_from_the_toy():
    root = Path(__file__).resolve().parents[2] / "agent" / "selector"
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for path in root.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.startswith("agent.toy")}
