"""Running an agent in-process against the real Mosquitto for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agent.app import AgentApp
from agent.config import AgentConfig
from agent.mqtt import AskRequest, MqttConfig, MqttLink
from tests.mqtt.mqtt_helpers import HOST, PORT


def agent_config(model_dir: Path, streams: list[dict[str, Any]], prefix: str, **sections: Any) -> AgentConfig:
    """A small agent: the given model and streams, local memory, real Mosquitto, HTTP on a free port."""
    data: dict[str, Any] = {
        "model": {"name": str(model_dir), "budget": 16, "layer": 2, "max_new_tokens": 3},
        "streams": streams,
        "mqtt": {"host": HOST, "port": PORT, "prefix": prefix, "client_id": f"{prefix}-agent"},
        "http": {"port": 0},
        "logging": {"level": "WARNING"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return AgentConfig.model_validate(data)


@asynccontextmanager
async def running(config: AgentConfig) -> AsyncIterator[AgentApp]:
    """The agent running in a task until the block ends; then stopped cleanly."""
    app = AgentApp(config)
    task = asyncio.create_task(app.run())
    ready = asyncio.create_task(app.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED, timeout=60)
    if task.done():
        task.result()  # raise the start-up error
    try:
        yield app
    finally:
        app.stop()
        await asyncio.wait_for(task, 60)


async def wait_for_memory(app: AgentApp, stream: str, tokens: int, timeout: float = 60.0) -> None:
    """Until the stream retains at least `tokens` tokens."""
    assert app.memory is not None
    async with asyncio.timeout(timeout):
        while True:
            stats = (await app.memory.stats(stream)).streams.get(stream)
            if stats is not None and stats.tokens >= tokens:
                return
            await asyncio.sleep(0.1)


@asynccontextmanager
async def client(prefix: str) -> AsyncIterator[MqttLink]:
    """A plain MQTT client of the agent, subscribed to every answer and error topic."""
    config = MqttConfig(
        host=HOST,
        port=PORT,
        prefix=prefix,
        client_id=f"{prefix}-{uuid.uuid4().hex[:6]}",
        max_queued_incoming=10_000,
    )
    async with MqttLink(
        config,
        subscriptions=[f"{prefix}/answer/#", f"{prefix}/errors"],
        availability=False,
        require_connection=True,
    ) as link:
        yield link


async def ask(link: MqttLink, question: str, *, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
    """Ask and wait for the reply that carries the request's id."""
    request = AskRequest(id=f"q-{uuid.uuid4().hex[:8]}", question=question, **fields)
    await link.publish(link.topics.ask, request.payload())
    async with asyncio.timeout(timeout):
        while True:
            message = await link.receive()
            data = json.loads(message.payload)
            if data.get("id") == request.id:
                return data
