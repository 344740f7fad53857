"""The agent against a real RTSP server and a real Redis: outages, restarts and watches."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.agent.service_helpers import agent_config, ask, client, running, wait_for_memory
from tests.mqtt.mqtt_helpers import read_retained, wait_until
from tests.streams.conftest import RtspServer, gstreamer_missing

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def rtsp(recording: Path):
    reason = gstreamer_missing()
    if reason:
        pytest.skip(reason)
    server = RtspServer(recording)
    server.start()
    yield server
    server.kill()


async def stream_status(prefix: str, stream: str) -> dict:
    return json.loads(await read_retained(f"{prefix}/{stream}/status", wait=0.5) or b"{}")


async def test_a_killed_camera_goes_offline_and_comes_back_online(model_dir, rtsp, prefix):
    stream = {
        "id": "cam",
        "uri": rtsp.url(),
        "source": {
            "sample_fps": 2,
            "chunk_seconds": 1,
            "stall_seconds": 2,
            "backoff_base_s": 0.2,
            "backoff_cap_s": 1,
        },
    }
    async with running(agent_config(model_dir, [stream], prefix)) as app:
        health = app.ingests["cam"].health
        await wait_until(lambda: health.online and health.chunks > 0, timeout=30, what="streaming")
        assert (await stream_status(prefix, "cam"))["online"] is True
        rtsp.kill()
        await wait_until(lambda: not health.online, timeout=30, what="offline")
        offline = await stream_status(prefix, "cam")
        rtsp.start()
        await wait_until(lambda: health.online and health.reconnects >= 1, timeout=60, what="back online")
        chunks = health.chunks
        await wait_until(lambda: health.chunks > chunks, timeout=30, what="new chunks after the outage")
        online = await stream_status(prefix, "cam")
    assert offline["online"] is False
    assert offline["state"] in ("stalled", "backing_off", "connecting")
    assert online["online"] is True
    assert online["reconnects"] >= 1


async def test_a_restarted_agent_answers_the_same_way_from_redis(model_dir, recording, prefix, redis_prefix):
    memory = {"backend": "redis", "redis": {"url": "redis://127.0.0.1:6379/0", "key_prefix": redis_prefix}}
    stream = {"id": "cam", "uri": str(recording), "source": {"sample_fps": 2, "chunk_seconds": 2}}
    async with (
        running(agent_config(model_dir, [stream], prefix, memory=memory)) as app,
        client(prefix) as link,
    ):
        await wait_for_memory(app, "cam", 32)
        first = await ask(link, "what color was the square ?", streams=["cam"])
    # The restarted agent has no streams configured: it answers from what Redis remembers.
    async with running(agent_config(model_dir, [], prefix, memory=memory)), client(prefix) as link:
        second = await ask(link, "what color was the square ?", streams=["cam"])
    assert first["ok"] and second["ok"]
    assert second["answer"] == first["answer"]
    assert picture_paths(second["evidence"]) == picture_paths(first["evidence"])  # each run has its own port
    assert second["tokens"] == first["tokens"] == {"retained": 32, "used": 16}


async def test_a_watch_added_over_mqtt_raises_events_on_new_chunks(model_dir, recording, prefix):
    stream = {
        "id": "cam",
        "uri": str(recording),
        "source": {"sample_fps": 2, "chunk_seconds": 1, "realtime": True},
    }
    config = agent_config(model_dir, [stream], prefix, watch_limits={"min_interval_s": 0})
    async with running(config) as app, client(prefix) as link:
        await link.close()
        events_config = link.config.model_copy(update={"client_id": f"{prefix}-events"})
        from agent.mqtt import MqttLink

        async with MqttLink(
            events_config, subscriptions=[f"{prefix}/cam/events"], availability=False, require_connection=True
        ) as events:
            spec = {"id": "anything", "question": "what happens ?", "min_interval_s": 0, "cooldown_s": 0}
            await events.publish(events.topics.watch_add, json.dumps(spec))
            event = json.loads((await events.receive(timeout=30)).payload)
        listing = json.loads(await read_retained(f"{prefix}/watches") or b"{}")
        assert app.watches.specs()[0].id == "anything"
    assert event["watch_id"] == "anything"
    assert event["stream"] == "cam"
    assert event["question"] == "what happens ?"
    assert [w["id"] for w in listing["watches"]] == ["anything"]


def picture_paths(evidence: list[dict]) -> list[dict]:
    """Evidence with each picture URL reduced to its path: a restarted agent listens on another port."""
    return [{**e, "picture": urlsplit(e["picture"]).path if e.get("picture") else None} for e in evidence]
