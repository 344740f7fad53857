"""The agent end to end on this machine's Mosquitto: questions, errors, status, metrics, stopping."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.agent.service_helpers import agent_config, ask, client, running, wait_for_memory
from tests.mqtt.mqtt_helpers import read_retained, wait_retained

pytestmark = pytest.mark.services


def file_stream(recording: Path, stream_id: str = "cam") -> dict[str, object]:
    return {"id": stream_id, "uri": str(recording), "source": {"sample_fps": 2, "chunk_seconds": 2}}


async def test_a_question_gets_an_answer_with_evidence_and_token_counts(model_dir, recording, prefix):
    config = agent_config(model_dir, [file_stream(recording)], prefix)
    async with running(config) as app, client(prefix) as link:
        await wait_for_memory(app, "cam", 32)
        reply = await ask(link, "what color was the square ?")
    assert reply["ok"] is True
    assert reply["model"] == str(model_dir)
    assert reply["tokens"] == {"retained": 32, "used": 16}
    assert reply["evidence"] and all(e["stream"] == "cam" for e in reply["evidence"])
    assert {"read", "select", "prefill", "generate", "total"} <= set(reply["timings_ms"])


async def test_each_bad_request_gets_an_error_answer_with_its_code(model_dir, recording, prefix):
    config = agent_config(model_dir, [file_stream(recording)], prefix, questions={"max_question_chars": 50})
    async with running(config) as app, client(prefix) as link:
        await wait_for_memory(app, "cam", 32)
        unknown = await ask(link, "what color ?", streams=["door"])
        too_long = await ask(link, "why " * 20)
        await link.publish(link.topics.ask, b"{not json")
        invalid = json.loads((await link.receive(timeout=10)).payload)
        answered = await ask(link, "what color ?")
    assert unknown["error"]["code"] == "unknown_stream"
    assert too_long["error"]["code"] == "question_too_long"
    assert invalid["ok"] is False and invalid["error"]["code"] == "invalid_json"
    assert answered["ok"] is True


async def test_a_stream_with_nothing_remembered_is_an_empty_memory_error(model_dir, recording, prefix):
    config = agent_config(model_dir, [file_stream(recording)], prefix)
    async with running(config) as app, client(prefix) as link:
        await wait_for_memory(app, "cam", 32)
        reply = await ask(link, "what color ?", since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00Z")
    assert reply["error"]["code"] == "empty_memory"


async def test_status_availability_and_metrics_are_published(model_dir, recording, prefix):
    config = agent_config(model_dir, [file_stream(recording)], prefix)
    async with running(config) as app:
        await wait_retained(f"{prefix}/available", b"online")
        await wait_for_memory(app, "cam", 32)
        status = json.loads(await read_retained(f"{prefix}/cam/status") or b"{}")
        assert app.http is not None
        base = f"http://127.0.0.1:{app.http.port}"
        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/metrics").read().decode())
        live = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/health/live").status)
        ready = await asyncio.to_thread(
            lambda: json.loads(urllib.request.urlopen(f"{base}/health/ready").read())
        )
    await wait_retained(f"{prefix}/available", b"stopped")
    assert status["stream"] == "cam"
    assert 'flexselect_memory_tokens{stream="cam"}' in metrics
    assert "# TYPE flexselect_question_stage_seconds histogram" in metrics
    assert live == 200
    assert ready == {"status": "ready", "memory": True, "mqtt": True, "model": True}


@pytest.mark.slow
async def test_a_flood_of_bad_and_good_questions_leaves_the_agent_answering(model_dir, recording, prefix):
    config = agent_config(model_dir, [file_stream(recording)], prefix, questions={"queue_size": 8})
    async with running(config) as app, client(prefix) as link:
        await wait_for_memory(app, "cam", 32)
        for i in range(1000):
            await link.publish(link.topics.ask, b'{"id": "bad-%d", "question": 5}' % i, qos=0)
            await link.publish(link.topics.ask, b'{"id": "good-%d", "question": "what color ?"}' % i, qos=0)
        replies: dict[str, dict] = {}
        async with asyncio.timeout(120):
            while len(replies) < 2000:
                data = json.loads((await link.receive()).payload)
                replies[data["id"]] = data
        after = await ask(link, "what color ?")
    bad = [r for k, r in replies.items() if k.startswith("bad-")]
    good = [r for k, r in replies.items() if k.startswith("good-")]
    assert len(bad) == 1000 and all(r["error"]["code"] == "invalid_request" for r in bad)
    assert len(good) == 1000
    assert {r["error"]["code"] for r in good if not r["ok"]} <= {"queue_full"}
    assert any(r["ok"] for r in good)
    assert after["ok"] is True


async def test_sigterm_stops_the_process_cleanly_with_stopped_published(
    model_dir, recording, prefix, tmp_path
):
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"model: {{name: {model_dir}, budget: 16, layer: 2}}\n"
        f"streams: [{{id: cam, uri: {recording}, source: {{sample_fps: 2, realtime: true}}}}]\n"
        f"mqtt: {{prefix: {prefix}, client_id: {prefix}-proc}}\nhttp: {{enabled: false}}\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "-c", str(config)], env=env)
    try:
        await wait_retained(f"{prefix}/available", b"online", timeout=60)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        proc.kill()
    assert code == 0
    await wait_retained(f"{prefix}/available", b"stopped")


def test_validate_config_reports_a_bad_key_with_its_path(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text("mqtt:\n  prefixx: cams\n")
    result = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "-c", str(config), "--validate-config"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "mqtt.prefixx: Extra inputs are not permitted" in result.stderr
