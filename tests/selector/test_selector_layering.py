"""FlexSelect-Lite stays apart: its training is model math (no service or stream code)."""

from __future__ import annotations

import subprocess
import sys


def test_the_selector_packages_import_no_service_or_stream_code():
    code = "import sys, flexselect.lite, flexselect.training.distill; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    assert not loaded & {"agent", "streams", "av", "redis", "aiomqtt"}  # asyncio comes with transformers
