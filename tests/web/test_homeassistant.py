"""Home Assistant MQTT discovery through the real Mosquitto: the fields HA requires, events, removal;
and the evidence JPEG of a watch event published the way Frigate publishes snapshots."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from agent.models import TOY_MODEL_DIR
from streams.synth import GroundTruth
from tests.agent.service_helpers import agent_config, running
from tests.mqtt.mqtt_helpers import HOST, PORT, clear_retained

pytestmark = [pytest.mark.services, pytest.mark.slow]

DISCOVERY = re.compile(
    r"^(?P<prefix>[^/]+)/(?P<component>[a-z_]+)/(?P<node>[A-Za-z0-9_-]+)/(?P<object>[A-Za-z0-9_-]+)/config$"
)
# What Home Assistant's MQTT integration rejects a discovery payload without (per component).
REQUIRED = {"sensor": {"state_topic"}, "event": {"state_topic", "event_types"}}
COMMON = {"name", "unique_id", "device", "availability", "origin"}


async def retained(topic_filter: str, quiet: float = 0.3) -> dict[str, bytes]:
    """Every retained message under a filter, as the broker holds it now."""
    found: dict[str, bytes] = {}
    async with aiomqtt.Client(HOST, PORT, timeout=5) as client:
        await client.subscribe(topic_filter, qos=1)
        messages = aiter(client.messages)
        while True:
            try:
                message = await asyncio.wait_for(anext(messages), quiet)
            except TimeoutError:
                return found
            if message.retain:
                found[str(message.topic)] = bytes(message.payload)  # type: ignore[arg-type]


def check_discovery(topic: str, config: dict[str, Any], prefix: str) -> str:
    """Assert the payload carries every field HA needs; returns the component."""
    match = DISCOVERY.match(topic)
    assert match, f"{topic} is not <discovery_prefix>/<component>/<node_id>/<object_id>/config"
    component = match["component"]
    missing = (REQUIRED[component] | COMMON) - set(config)
    assert not missing, f"{topic} lacks {missing}"
    assert config["device"]["identifiers"] and config["origin"]["name"]
    assert [a["topic"] for a in config["availability"]] == [f"{prefix}/available"]
    assert config["state_topic"].startswith(prefix + "/")
    return component


async def test_streams_and_watches_are_discovered_fire_events_and_a_removed_watch_disappears(
    world: tuple[Path, GroundTruth],
) -> None:
    path, truth = world
    prefix = f"fsatest-{uuid.uuid4().hex[:10]}"
    discovery = f"fsatest-ha-{uuid.uuid4().hex[:8]}"
    question = next(q for q in truth.questions if q.kind == "color")
    config = agent_config(
        TOY_MODEL_DIR,
        [{"id": "cam", "uri": str(path), "source": {"sample_fps": 2.0, "chunk_seconds": 2.0}}],
        prefix,
        homeassistant={"enabled": True, "discovery_prefix": discovery},
        pictures={"mqtt_snapshots": True},
        watches=[{"id": "door.open", "question": question.question, "streams": ["cam"], "min_interval_s": 0}],
        watch_limits={"min_interval_s": 0},
    )
    try:
        async with aiomqtt.Client(HOST, PORT, timeout=5) as listener:
            await listener.subscribe(f"{prefix}/watches/+/event", qos=1)
            async with running(config) as app:
                event = json.loads((await asyncio.wait_for(anext(aiter(listener.messages)), 60)).payload)
                found = await retained(f"{discovery}/#")
                configs = {topic: json.loads(payload) for topic, payload in found.items()}
                components = {topic: check_discovery(topic, c, prefix) for topic, c in configs.items()}
                sensor = next(c for t, c in configs.items() if components[t] == "sensor")
                watch_topic = next(t for t in configs if components[t] == "event")
                watch = configs[watch_topic]
                status = json.loads((await retained(sensor["state_topic"]))[sensor["state_topic"]])
                snapshots = await retained(f"{prefix}/cam/snapshot/#")

                assert app.http is not None
                request = urllib.request.Request(
                    f"{app.http.base_url}/api/v1/watches/door.open", method="DELETE"
                )
                removed = await asyncio.to_thread(lambda: urllib.request.urlopen(request).status)
                after = await retained(f"{discovery}/#")
    finally:
        await clear_retained(prefix)
        await clear_retained(discovery)

    assert sorted(components.values()) == ["event", "sensor"]
    assert sensor["unique_id"] != watch["unique_id"]
    assert sensor["value_template"] == "{{ value_json.state }}" and status["state"] in sensor["options"]
    assert watch_topic.endswith("/watch_door_2eopen/config") and watch["event_types"] == ["cam"]
    assert watch["state_topic"] == f"{prefix}/watches/door.open/event"
    assert event["event_type"] in watch["event_types"] and event["question"] == question.question
    assert event["picture"].startswith("http://127.0.0.1:")
    assert snapshots[f"{prefix}/cam/snapshot/watch/door.open"].startswith(b"\xff\xd8\xff")  # Frigate-style
    assert removed == 204
    assert watch_topic not in after and any(components[t] == "sensor" for t in after)
