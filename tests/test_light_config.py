"""Configuration modules load no heavy library: a config file can be read and checked without torch & co."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "av", "aiomqtt", "paho", "transformers", "redis", "numpy")
CONFIG_MODULES = [
    "agent.config",
    "streams.config",
    "flexselect.config",
    "flexselect.lite.config",
    "agent.mqtt.config",
    "agent.memory.config",
    "agent.cluster.config",
]


def heavy_loaded_by(module: str) -> list[str]:
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("module", CONFIG_MODULES)
def test_a_config_module_imports_no_heavy_library(module: str):
    assert heavy_loaded_by(module) == []


def test_the_check_sees_a_heavy_import():
    assert heavy_loaded_by("agent.memory.base") == ["numpy", "torch"]
