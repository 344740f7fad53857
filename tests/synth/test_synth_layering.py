"""streams.synth depends on numpy and PyAV only."""

from __future__ import annotations

import subprocess
import sys


def test_streams_synth_imports_no_models_services_or_agent():
    code = "import sys, streams.synth; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    assert not loaded & {"agent", "flexselect", "transformers", "torch", "redis", "aiomqtt"}
