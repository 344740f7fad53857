"""Fixtures for the MQTT tests: the shared Mosquitto with a unique prefix per test, own brokers, TLS files."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.mqtt import BackoffConfig, MqttConfig
from tests.mqtt.mqtt_helpers import (
    HOST,
    PORT,
    MosquittoServer,
    clear_retained,
    free_port,
    make_tls_files,
    reachable,
)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A topic prefix of this test's own on the shared Mosquitto; its retained topics are cleared after."""
    if not reachable(HOST, PORT):
        pytest.skip(f"no Mosquitto at {HOST}:{PORT} (set FSA_TEST_MQTT_HOST/FSA_TEST_MQTT_PORT)")
    name = f"fsatest-{uuid.uuid4().hex[:10]}"
    yield name
    await clear_retained(name)


@pytest.fixture
def make_config(prefix: str) -> Callable[..., MqttConfig]:
    """Builds an `MqttConfig` for the shared Mosquitto under the test's prefix, with fast timeouts."""

    def factory(**overrides: Any) -> MqttConfig:
        values: dict[str, Any] = {
            "host": HOST,
            "port": PORT,
            "prefix": prefix,
            "client_id": f"{prefix}-{uuid.uuid4().hex[:6]}",
            "connect_timeout_s": 3.0,
            "publish_timeout_s": 3.0,
            "backoff": BackoffConfig(base_s=0.05, cap_s=0.2, jitter=0.1),
        }
        values.update(overrides)
        return MqttConfig(**values)

    return factory


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., MosquittoServer]]:
    """Starts mosquitto processes of the test's own (stopped after the test)."""
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not on PATH")
    servers: list[MosquittoServer] = []

    def start(*lines: str, port: int | None = None) -> MosquittoServer:
        directory = tmp_path / f"mosquitto-{len(servers)}"
        directory.mkdir()
        server = MosquittoServer(directory, port or free_port(), lines)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CA, server and client certificates for the TLS tests."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH")
    return make_tls_files(tmp_path_factory.mktemp("tls"))
