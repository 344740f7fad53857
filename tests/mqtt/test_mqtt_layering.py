"""`agent.mqtt` knows no models, streams or memory; `ask` loads the MQTT stack only when it runs."""

from __future__ import annotations

import subprocess
import sys


def imported_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_mqtt_package_imports_no_models_streams_memory_or_broker():
    loaded = imported_after("import agent.mqtt, agent.mqtt.broker, agent.mqtt.schemas")
    tops = {name.split(".")[0] for name in loaded}
    assert not tops & {"torch", "transformers", "flexselect", "streams", "redis", "av", "amqtt"}
    assert not {name for name in loaded if name.startswith("agent.")} - {
        name for name in loaded if name.startswith("agent.mqtt")
    }


def test_registering_the_ask_command_imports_no_mqtt_client():
    loaded = imported_after("import cli.commands.ask")
    assert not {name.split(".")[0] for name in loaded} & {"aiomqtt", "paho", "torch"}
