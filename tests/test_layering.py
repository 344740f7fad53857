"""Layering: flexselect is model math only; streams knows no models or services; common knows neither."""

from __future__ import annotations

import subprocess
import sys


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_flexselect_imports_no_service_stream_or_agent_code():
    loaded = imported_after("flexselect.adapters, flexselect.ranking, flexselect.budget, flexselect.pipeline")
    assert not loaded & {"agent", "streams", "redis", "aiomqtt", "paho", "av"}


def test_streams_imports_no_models_or_services():
    loaded = imported_after("streams")
    assert not loaded & {"agent", "flexselect", "transformers", "torch", "redis", "aiomqtt"}


def test_common_imports_none_of_the_layers_it_serves():
    loaded = imported_after("common.backoff, common.masking")
    assert not loaded & {"agent", "streams", "flexselect", "torch", "numpy", "av", "redis", "aiomqtt"}
