"""The agent's end-to-end tests share the MQTT tests' per-test prefix on the real Mosquitto."""

from tests.mqtt.conftest import prefix  # noqa: F401
