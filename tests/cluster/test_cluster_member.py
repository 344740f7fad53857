"""One clustered agent in-process on the real Redis and Mosquitto: leases, journal adoption, status."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis
import yaml
from prometheus_client import generate_latest
from pydantic import ValidationError

from agent.cluster.config import ClusterConfig
from agent.cluster.journal import digest
from agent.cluster.leases import LeaseStore
from agent.cluster.registry import AgentInfo, Registry
from agent.config import AgentConfig, StreamSection
from agent.memory.redis_scripts import KeyLayout
from agent.mqtt import AskRequest, IncomingMessage, Topics
from cli.main import main
from tests.agent.service_helpers import agent_config, ask, client, running, wait_for_memory
from tests.memory.memory_helpers import REDIS_URL, drop_prefix
from tests.mqtt.mqtt_helpers import read_retained

pytestmark = [pytest.mark.services]


def test_clustering_needs_the_shared_redis_memory():
    with pytest.raises(ValidationError, match=r"cluster\.enabled needs memory\.backend: redis"):
        AgentConfig.model_validate({"cluster": {"enabled": True}})


def test_a_tick_must_renew_a_lease_at_least_twice_before_it_expires():
    with pytest.raises(ValidationError, match="at most half of lease_s"):
        ClusterConfig(lease_s=2, tick_s=1.5)
    assert ClusterConfig(lease_s=2).period_s == 0.5


def test_a_pinned_stream_goes_only_to_agents_with_its_labels():
    pins = {"dock": {"site": "north"}}
    assert ClusterConfig(labels={"site": "north", "gpu": "a100"}, pins=pins).may_ingest("dock")
    assert not ClusterConfig(labels={"site": "south"}, pins=pins).may_ingest("dock")
    assert ClusterConfig(pins=pins).may_ingest("lobby")


def test_every_clustered_agent_subscribes_to_the_questions_plainly():
    topics = Topics("site1")
    commands = topics.cluster_commands("g1")
    assert topics.ask_filters == ("site1/ask", "site1/ask/+")
    assert set(topics.ask_filters) <= set(commands)  # each agent gets every question; Redis picks one
    assert topics.watch_add in commands and "site1/cluster/streams/add" in commands
    assert not any(c.startswith("$share/") for c in commands)  # the broker must not pick (it loses some)


@pytest.mark.slow
async def test_a_clustered_agent_ingests_its_leased_stream_and_answers_a_dead_agents_questions(
    model_dir, recording, prefix, redis_prefix
):
    memory = {"backend": "redis", "redis": {"url": "redis://127.0.0.1:6379/0", "key_prefix": redis_prefix}}
    stream = {"id": "cam", "uri": str(recording), "source": {"sample_fps": 2, "chunk_seconds": 2}}
    cluster = {"enabled": True, "agent_id": "solo", "lease_s": 1.0, "status_interval_s": 0.5}
    config = agent_config(model_dir, [stream], prefix, memory=memory, cluster=cluster)
    async with running(config) as app, client(prefix) as link:
        assert app.cluster is not None
        await wait_for_memory(app, "cam", 32)
        owner = await app.cluster.leases.read("cam")
        answered = await ask(link, "what color was the square ?", streams=["cam"])

        # A question claimed by an agent that died before answering: this agent, holding its own copy,
        # re-takes it once the taker's liveness key is gone, and replies, late.
        registry = Registry(app.memory.client, redis_prefix)
        orphan = AskRequest(id="q-orphan", question="what color was the square ?", streams=["cam"])
        message = IncomingMessage(topic=link.topics.ask, payload=orphan.payload())
        claim = app.cluster.journal.claim_key(digest(message))
        await app.memory.client.set(claim, b"taken ghost")
        ghost = AgentInfo(
            id="ghost", host="h", pid=1, capacity=1, started_at=time.time(), seen_at=time.time()
        )
        await app.memory.client.hset(registry.agents_key, "ghost", ghost.model_dump_json())
        await link.publish(link.topics.ask, orphan.payload())
        async with asyncio.timeout(30):
            while True:
                reply = json.loads((await link.receive()).payload)
                if reply.get("id") == "q-orphan":
                    break
        await asyncio.sleep(0.5)  # the done mark follows the reply
        left = await app.memory.client.get(claim)
        metrics = generate_latest(app.metrics.registry).decode()
        status = json.loads(await read_retained(f"{prefix}/cluster/status", wait=1.0) or b"{}")
    assert owner is not None and owner.agent == "solo" and owner.token >= 1
    assert answered["ok"] and reply["ok"] and reply["answer"] == answered["answer"]
    assert left == b"done"
    assert "flexselect_cluster_streams_owned 1.0" in metrics
    assert "flexselect_cluster_adopted_questions_total 1.0" in metrics
    assert [a["id"] for a in status["agents"] if a["alive"]] == ["solo"]
    assert status["streams"][0]["stream"] == "cam" and status["unowned"] == []


def test_cluster_status_prints_owners_and_exits_1_while_a_stream_has_none(tmp_path, capsys):
    prefix = f"fsatest-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "memory": {"backend": "redis", "redis": {"key_prefix": prefix}},
                "cluster": {"enabled": True, "agent_id": "cli"},
            }
        )
    )

    async def setup() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        registry = Registry(client, prefix)
        sections = [StreamSection(id=s, uri=f"/videos/{s}.mp4") for s in ("cam1", "cam2")]
        await registry.put_streams(sections)
        info = AgentInfo(id="box1", host="h", pid=1, capacity=4, started_at=time.time(), seen_at=time.time())
        await registry.heartbeat(info, ttl_s=30)
        await LeaseStore(client, KeyLayout(prefix), "box1", lease_s=30).claim("cam1")
        await client.aclose()

    try:
        asyncio.run(setup())
        code = main(["cluster", "status", "-c", str(config)])
        table = capsys.readouterr().out
        main(["cluster", "status", "-c", str(config), "--json"])
        status = json.loads(capsys.readouterr().out)
    finally:
        drop_prefix(REDIS_URL, prefix)
    assert code == 1  # cam2 has no owner
    assert "box1" in table and "(free)" in table
    assert [(s["stream"], s["owner"], s["token"]) for s in status["streams"]] == [
        ("cam1", "box1", 1),
        ("cam2", None, None),
    ]
    assert status["agents"][0]["alive"] is True and status["agents"][0]["streams"] == ["cam1"]
