"""The link against the real Mosquitto: availability, replies over v5 and 3.1.1, bounded queues, the will."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.mqtt import (
    AnswerMessage,
    ErrorMessage,
    LinkClosedError,
    LinkState,
    LinkTimeoutError,
    MqttLink,
    RequestError,
    TokenCounts,
    TopicError,
    parse_ask,
)
from tests.mqtt.mqtt_helpers import HOST, PORT, read_retained, wait_retained, wait_until

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]
REPO = Path(__file__).resolve().parents[2]


async def answer_one(link: MqttLink) -> str:
    """A minimal agent: parse the next question, reply with an answer or an error; returns the reply topic."""
    incoming = await link.receive(timeout=5)
    try:
        request = parse_ask(incoming.payload, max_question_chars=100, topics=link.topics)
    except RequestError as exc:
        return await link.reply(exc, incoming, ErrorMessage.from_error(exc).payload())
    answer = AnswerMessage(
        id=request.id,
        question=request.question,
        answer="a red van",
        tokens=TokenCounts(retained=10, used=4),
        model="tiny",
        answered_at=datetime.now(UTC),
    )
    return await link.reply(request, incoming, answer.payload())


async def next_message(client: aiomqtt.Client, timeout: float = 5) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            return message
    raise AssertionError("no message")


async def test_open_publishes_online_and_a_clean_close_leaves_stopped(make_config, prefix):
    async with MqttLink(make_config()) as link:
        assert link.state is LinkState.CONNECTED and link.protocol == "5"
        assert await read_retained(f"{prefix}/available") == b"online"
    assert link.state is LinkState.STOPPED
    assert await read_retained(f"{prefix}/available") == b"stopped"


async def test_an_exception_escaping_the_block_leaves_offline(make_config, prefix):
    with pytest.raises(RuntimeError):
        async with MqttLink(make_config()):
            raise RuntimeError("boom")
    assert await read_retained(f"{prefix}/available") == b"offline"


async def test_v5_response_topic_gets_the_reply_with_the_same_correlation_data(make_config, prefix):
    async with (
        MqttLink(make_config(protocol="5")) as link,
        aiomqtt.Client(HOST, PORT, protocol=aiomqtt.ProtocolVersion.V5) as client,
    ):
        await client.subscribe(f"{prefix}/answer/#", qos=1)
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = f"{prefix}/answer/v5client/7"
        properties.CorrelationData = b"\x00corr-7"
        await client.publish(
            link.topics.ask, b'{"id": "q7", "question": "what?"}', qos=1, properties=properties
        )
        assert await answer_one(link) == f"{prefix}/answer/v5client/7"
        reply = await next_message(client)
        assert str(reply.topic) == f"{prefix}/answer/v5client/7"
        assert reply.properties.CorrelationData == b"\x00corr-7"
        assert json.loads(reply.payload)["answer"] == "a red van"


async def test_a_response_topic_outside_the_answer_subtree_is_ignored(make_config, prefix):
    async with (
        MqttLink(make_config(protocol="5")) as link,
        aiomqtt.Client(HOST, PORT, protocol=aiomqtt.ProtocolVersion.V5) as client,
    ):
        await client.subscribe(f"{prefix}/#", qos=1)
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = f"{prefix}/cam1/events"
        await client.publish(
            link.topics.ask, b'{"id": "q8", "question": "what?"}', qos=1, properties=properties
        )
        assert await answer_one(link) == f"{prefix}/answer/q8"


@pytest.mark.parametrize("link_protocol", ["3.1.1", "5"])
async def test_3_1_1_clients_use_reply_to_or_the_default_answer_topic(make_config, prefix, link_protocol):
    async with MqttLink(make_config(protocol=link_protocol)) as link, aiomqtt.Client(HOST, PORT) as client:
        assert link.protocol == link_protocol
        await client.subscribe(f"{prefix}/answer/#", qos=1)
        ask = {"id": "a1", "question": "who?", "reply_to": f"{prefix}/answer/ha/kitchen"}
        await client.publish(link.topics.ask, json.dumps(ask), qos=1)
        assert await answer_one(link) == f"{prefix}/answer/ha/kitchen"
        assert str((await next_message(client)).topic) == f"{prefix}/answer/ha/kitchen"
        await client.publish(link.topics.ask, b'{"id": "a2", "question": "who?"}', qos=1)
        await answer_one(link)
        reply = await next_message(client)
        assert str(reply.topic) == f"{prefix}/answer/a2" and json.loads(reply.payload)["ok"] is True


async def test_unreadable_requests_get_an_error_on_the_errors_topic(make_config, prefix):
    async with MqttLink(make_config()) as link, aiomqtt.Client(HOST, PORT) as client:
        await client.subscribe(f"{prefix}/errors", qos=1)
        await client.publish(link.topics.ask, b"not json", qos=1)
        assert await answer_one(link) == f"{prefix}/errors"
        reply = json.loads((await next_message(client)).payload)
        assert reply["id"] is None and reply["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", range(190, 200)), ("drop_newest", range(10))])
async def test_a_flood_fills_the_bounded_inbox_and_the_rest_is_dropped_and_counted(
    make_config, prefix, policy, kept
):
    config = make_config(max_queued_incoming=10, incoming_drop_policy=policy)
    async with MqttLink(config) as link, aiomqtt.Client(HOST, PORT) as client:
        for n in range(200):
            await client.publish(link.topics.ask, str(n).encode(), qos=0)
        await wait_until(lambda: link.counters.received == 200, what="200 messages")
        assert (link.queued_incoming, link.counters.incoming_dropped) == (10, 190)
        got = [int((await link.receive(timeout=1)).payload) for _ in range(10)]
        assert got == list(kept)
        with pytest.raises(LinkTimeoutError):
            await link.receive(timeout=0.05)


async def test_publish_is_confined_to_the_prefix_and_refused_after_close(make_config, prefix):
    async with MqttLink(make_config()) as link:
        with pytest.raises(TopicError):
            await link.publish("elsewhere/x", b"1")
        with pytest.raises(TopicError):
            await link.publish(f"{prefix}/a/+", b"1")
    with pytest.raises(LinkClosedError):
        await link.publish(f"{prefix}/x", b"1")
    with pytest.raises(LinkClosedError):
        await link.receive(timeout=1)


async def test_the_message_iterator_ends_when_the_link_closes(make_config, prefix):
    link = MqttLink(make_config())
    await link.__aenter__()

    async def consume() -> list[bytes]:
        return [message.payload async for message in link.messages()]

    consumer = asyncio.create_task(consume())
    await link.publish(link.topics.ask, b"one")
    await wait_until(lambda: link.counters.received == 1, what="one message")
    await link.close()
    assert await asyncio.wait_for(consumer, 2) == [b"one"]


WILL_CHILD = """
import asyncio, sys
from agent.mqtt import MqttConfig, MqttLink

async def main():
    async with MqttLink(MqttConfig.model_validate_json(sys.argv[1])):
        print("ready", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_killed_agent_leaves_offline_through_the_will(make_config, prefix):
    config = make_config(keepalive_s=5)
    child = subprocess.Popen(
        [sys.executable, "-c", WILL_CHILD, config.model_dump_json()],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 20)
        assert line.strip() == b"ready", child.stderr.read().decode()
        assert await read_retained(f"{prefix}/available") == b"online"
        child.kill()  # SIGKILL: no chance to publish `stopped`
        child.wait(timeout=5)
        await wait_retained(f"{prefix}/available", b"offline")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=5)
        child.stdout.close()
        child.stderr.close()
