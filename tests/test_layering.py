"""Layering: flexselect is model math only; streams knows no models or services; the service (agent)
never reaches the offline lab or the command line; the lab may use everything below it but the CLI;
common (what streams and agent share) knows none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def static_imports(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of `package` imports anywhere: at its top, in functions, in
    TYPE_CHECKING blocks (relative imports stay inside the package and are left out)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(package: str, forbidden: set[str]) -> dict[str, set[str]]:
    return {path: names & forbidden for path, names in static_imports(package).items() if names & forbidden}


def test_flexselect_imports_no_service_stream_or_agent_code():
    loaded = imported_after("flexselect.adapters, flexselect.ranking, flexselect.budget, flexselect.pipeline")
    tops = {name.split(".")[0] for name in loaded}
    assert not tops & {"agent", "streams", "redis", "aiomqtt", "paho", "av"}


def test_streams_imports_no_models_or_services():
    loaded = imported_after("streams")
    tops = {name.split(".")[0] for name in loaded}
    assert not tops & {"agent", "flexselect", "transformers", "torch", "redis", "aiomqtt"}


def test_no_flexselect_module_imports_the_service_streams_the_lab_or_the_cli():
    assert offenders("flexselect", {"agent", "streams", "lab", "cli"}) == {}


def test_no_streams_module_imports_models_the_service_the_lab_or_the_cli():
    assert offenders("streams", {"flexselect", "torch", "transformers", "agent", "lab", "cli"}) == {}


def test_no_service_module_imports_the_lab_or_the_cli():
    assert offenders("agent", {"lab", "cli"}) == {}


def test_no_lab_module_imports_the_cli():
    assert offenders("lab", {"cli"}) == {}


def test_the_scan_sees_imports_inside_functions():
    toy_command = static_imports("cli")["cli/commands/toy.py"]  # torch and the models load when it runs
    assert {"torch", "flexselect"} <= toy_command


def test_the_running_service_loads_no_lab_or_cli_module():
    loaded = imported_after("agent.app")
    assert "agent.app" in loaded
    assert sorted(name for name in loaded if name.split(".")[0] in {"lab", "cli"}) == []


def test_no_common_module_imports_a_layer_or_a_heavy_library():
    layers = {"agent", "streams", "flexselect", "lab", "cli", "torch", "numpy", "av", "redis", "aiomqtt"}
    assert offenders("common", layers) == {}
