"""The agent against hostile clients, floods and refusals, end to end on the real Mosquitto and Redis
(issue 17, items 2, 3, 4 and 7)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.mqtt import AskRequest, MqttConfig, MqttLink
from cli.main import main
from tests.agent.service_helpers import agent_config, ask, client, running, wait_for_memory
from tests.memory.memory_helpers import RedisServer, free_port
from tests.mqtt.mqtt_helpers import make_tls_files, read_retained

pytestmark = pytest.mark.services


def file_stream(recording: Path, **source: Any) -> dict[str, Any]:
    return {"id": "cam", "uri": str(recording), "source": {"sample_fps": 2, "chunk_seconds": 2, **source}}


async def replies_until(link: MqttLink, last_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every reply the link receives up to and including the one for `last_id`."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1].get("id") != last_id:
            seen.append(json.loads((await link.receive()).payload))
    return seen


@pytest.mark.slow
async def test_a_retained_question_is_answered_once_and_not_again_after_a_restart(
    model_dir, recording, prefix
):
    config = agent_config(model_dir, [file_stream(recording)], prefix)
    async with client(prefix) as link:
        async with running(config) as app:
            await wait_for_memory(app, "cam", 32)
            retained = AskRequest(id="r1", question="what color was the square ?")
            await link.publish(link.topics.ask, retained.payload(), retain=True)
            first = await replies_until(link, "r1")
        async with running(config):  # the broker hands the restarted agent r1 again, flagged retained
            await link.publish(link.topics.ask, AskRequest(id="q2", question="what color ?").payload())
            after = await replies_until(link, "q2")
        still_retained = await read_retained(link.topics.ask)
    assert [r["id"] for r in first] == ["r1"]
    assert [r["id"] for r in after] == ["q2"]  # r1 arrived again as a retained message and was ignored
    assert still_retained == retained.payload()


@pytest.mark.slow
async def test_a_flood_of_watches_is_capped_and_questions_are_still_answered(
    model_dir, recording, prefix, redis_prefix
):
    config = agent_config(
        model_dir,
        [file_stream(recording, chunk_seconds=1, realtime=True)],
        prefix,
        memory={"backend": "redis", "redis": {"key_prefix": redis_prefix}},
        questions={"queue_size": 4},
        watch_limits={"max_watches": 8, "min_interval_s": 2},
    )
    async with running(config) as app, client(prefix) as link:
        await wait_for_memory(app, "cam", 8)
        for i in range(30):  # 10 below the interval floor, then 20 at it: 8 fit under the cap
            spec = {
                "id": f"w{i}",
                "question": f"is there a square {i} ?",
                "min_interval_s": 0 if i < 10 else 2,
            }
            await link.publish(link.topics.watch_add, json.dumps(spec))
        questions = [AskRequest(id=f"q{i}", question="what color was the square ?") for i in range(4)]
        for request in questions:
            await link.publish(link.topics.ask, request.payload())
        replies: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(60):
            while len(replies) < 22 + 4:
                reply = json.loads((await link.receive()).payload)
                replies[reply["id"]] = reply
        watching = len(app.watches)
    codes = [replies[f"w{i}"]["error"]["code"] for i in range(30) if f"w{i}" in replies]
    assert codes == ["invalid_request"] * 10 + ["too_many_watches"] * 12
    assert watching == 8
    assert [replies[r.id]["ok"] for r in questions] == [True] * 4


async def test_an_unreachable_redis_answers_memory_unavailable_without_its_address(
    model_dir, recording, prefix
):
    port = free_port()
    config = agent_config(
        model_dir,
        [file_stream(recording)],
        prefix,
        memory={
            "backend": "redis",
            "redis": {"url": f"redis://127.0.0.1:{port}/0", "connect_timeout_s": 0.5},
        },
    )
    async with running(config), client(prefix) as link:
        reply = await ask(link, "what color ?")
    assert reply["ok"] is False
    assert reply["error"] == {
        "code": "memory_unavailable",
        "message": "the token memory is unavailable; retry later",
    }


def _passwords(path: Path, users: dict[str, str]) -> Path:
    for i, (user, password) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run(["mosquitto_passwd", "-b", *create, str(path), user, password], check=True)
    return path


def _user(port: int, prefix: str, user: str, password: str) -> MqttConfig:
    return MqttConfig(
        host="127.0.0.1", port=port, prefix=prefix, client_id=f"{user}-{uuid.uuid4().hex[:4]}",
        username=user, password=password, connect_timeout_s=3,
    )  # fmt: skip


@pytest.mark.slow
async def test_with_the_documented_acl_one_client_cannot_push_answers_into_another_clients_topic(
    model_dir,
    recording,
    mosquitto,
    tmp_path,
):
    prefix = "flexselect"
    users = {"agent": "agent-pw", "kitchen-panel": "kitchen-pw", "intruder": "intruder-pw"}
    acl = tmp_path / "acl"
    acl.write_text(  # the ACL docs/mqtt.md tells operators to configure
        f"user agent\ntopic readwrite {prefix}/#\n\n"
        f"pattern write {prefix}/ask/%u\npattern read {prefix}/answer/%u/#\n"
    )
    passwd = _passwords(tmp_path / "passwd", users)
    server = mosquitto("allow_anonymous false", f"password_file {passwd}", f"acl_file {acl}")
    config = agent_config(
        model_dir,
        [file_stream(recording)],
        prefix,
        mqtt={"port": server.port, "username": "agent", "password": "agent-pw"},
    )
    kitchen_config = _user(server.port, prefix, "kitchen-panel", "kitchen-pw")
    intruder_config = _user(server.port, prefix, "intruder", "intruder-pw")
    async with (
        running(config) as app,
        MqttLink(
            kitchen_config, subscriptions=[f"{prefix}/answer/#"], availability=False, require_connection=True
        ) as kitchen,
        MqttLink(
            intruder_config, subscriptions=[f"{prefix}/answer/#"], availability=False, require_connection=True
        ) as intruder,
    ):
        await wait_for_memory(app, "cam", 32)
        target = f"{prefix}/answer/kitchen-panel/k2"
        for topic, request_id in ((f"{prefix}/ask/kitchen-panel", "k3"), (f"{prefix}/ask", "k4")):
            bad = AskRequest(id=request_id, question="what color ?", reply_to=target)
            await intruder.publish(topic, bad.payload())  # the broker drops both: not the intruder's topics
        hostile = AskRequest(id="k2", question="what color ?", reply_to=target)
        await intruder.publish(f"{prefix}/ask/intruder", hostile.payload())
        refused = json.loads((await intruder.receive(timeout=30)).payload)
        own = AskRequest(id="k1", question="what color ?", reply_to=f"{prefix}/answer/kitchen-panel/k1")
        await kitchen.publish(f"{prefix}/ask/kitchen-panel", own.payload())
        kitchen_got = await replies_until(kitchen, "k1")
        await asyncio.sleep(0.3)
        intruder_extra = intruder.queued_incoming
    assert refused["id"] == "k2" and refused["error"]["code"] == "invalid_request"
    assert refused["error"]["message"] == (
        f"field 'reply_to': reply_to '{target}' must lie below {prefix}/answer/intruder/"
    )
    assert [(r["id"], r["ok"]) for r in kitchen_got] == [("k1", True)]
    assert intruder_extra == 0  # the intruder cannot read the kitchen panel's answer either


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`serve` installs its own log handler on the root logger; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _serve(tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml: str) -> tuple[int, list[str]]:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml)
    code = main(["serve", "-c", str(path)])
    return code, capsys.readouterr().err.splitlines()


def _base_yaml(model_dir: Path, recording: Path, prefix: str) -> str:
    return (
        f"model: {{name: {model_dir}, budget: 16, layer: 2}}\n"
        f"streams: [{{id: cam, uri: {recording}}}]\n"
        f"http: {{enabled: false}}\nlogging: {{level: WARNING}}\n"
    )


def test_a_wrong_mqtt_password_stops_serve_with_one_line(
    model_dir,
    recording,
    mosquitto,
    tmp_path,
    capsys,
    restore_logging,
    monkeypatch,
):
    passwd = _passwords(tmp_path / "passwd", {"agent": "right"})
    server = mosquitto("allow_anonymous false", f"password_file {passwd}")
    monkeypatch.setenv("FLEXSELECT__MQTT__PASSWORD", "wrong")
    yaml = _base_yaml(model_dir, recording, "fsa") + f"mqtt: {{port: {server.port}, username: agent}}\n"
    code, err = _serve(tmp_path, capsys, yaml)
    assert code == 1
    assert err[-1] == (
        f"flexselect-agent serve: error: broker 127.0.0.1:{server.port} refused the connection: "
        "not authorised (check username, password and the broker ACL)"
    )
    assert not any("Traceback" in line for line in err)


def test_a_broker_certificate_from_another_ca_stops_serve_with_one_line(
    model_dir,
    recording,
    mosquitto,
    tls_files,
    tmp_path,
    capsys,
    restore_logging,
):
    server = mosquitto(
        f"cafile {tls_files['ca.crt']}",
        f"certfile {tls_files['server.crt']}",
        f"keyfile {tls_files['server.key']}",
    )
    other_ca = make_tls_files(tmp_path / "other")["ca.crt"]
    yaml = (
        _base_yaml(model_dir, recording, "fsa")
        + f"mqtt: {{port: {server.port}, tls: {{ca_file: {other_ca}}}}}\n"
    )
    code, err = _serve(tmp_path, capsys, yaml)
    assert code == 1
    assert err[-1].startswith(f"flexselect-agent serve: error: cannot connect to 127.0.0.1:{server.port}: ")
    assert "certificate verify failed" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_a_wrong_redis_password_stops_serve_with_one_line(
    model_dir, recording, tmp_path, capsys, restore_logging, monkeypatch
):
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory, free_port())
    server.start()
    try:
        subprocess.run(
            ["redis-cli", "-p", str(server.port), "config", "set", "requirepass", "right"], check=True,
            capture_output=True,
        )  # fmt: skip
        monkeypatch.setenv("FLEXSELECT__MEMORY__REDIS__PASSWORD", "wrong")
        yaml = _base_yaml(model_dir, recording, "fsa") + (
            f"memory: {{backend: redis, redis: {{url: 'redis://127.0.0.1:{server.port}/0'}}}}\n"
        )
        code, err = _serve(tmp_path, capsys, yaml)
    finally:
        server.stop(kill=True)
    assert code == 1
    assert err[-1].startswith(f"flexselect-agent serve: error: Redis at redis://127.0.0.1:{server.port}/0")
    assert "refused the credentials" in err[-1]
    assert not any("Traceback" in line for line in err)
