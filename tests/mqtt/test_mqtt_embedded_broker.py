"""The embedded amqtt broker: 3.1.1 clients work, "auto" falls back from v5, the JSON reply path works."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from agent.mqtt import ConnectError, ConnectRefusedError, LinkState, MqttConfig, MqttLink, parse_ask
from agent.mqtt.broker import EmbeddedBroker
from tests.mqtt.mqtt_helpers import reachable

pytest.importorskip("amqtt")
pytestmark = pytest.mark.timeout(60)


def config_for(port: int, protocol: str) -> MqttConfig:
    return MqttConfig(port=port, prefix="demo", client_id=f"agent-{protocol}", protocol=protocol)  # type: ignore[arg-type]


async def test_auto_falls_back_to_3_1_1_and_json_replies_work():
    async with (
        EmbeddedBroker() as broker,
        MqttLink(config_for(broker.port, "auto")) as link,
        aiomqtt.Client("127.0.0.1", broker.port) as client,
    ):
        assert (link.state, link.protocol) == (LinkState.CONNECTED, "3.1.1")
        await client.subscribe("demo/answer/#", qos=1)
        await client.publish(
            "demo/ask", b'{"id": "d1", "question": "hi?", "reply_to": "demo/answer/me"}', qos=1
        )
        incoming = await link.receive(timeout=5)
        assert incoming.response_topic is None and incoming.correlation_data is None
        request = parse_ask(incoming.payload, max_question_chars=100, topics=link.topics)
        assert await link.reply(request, incoming, b'{"id": "d1", "ok": true}') == "demo/answer/me"
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert (str(message.topic), message.payload) == (
                    "demo/answer/me",
                    b'{"id": "d1", "ok": true}',
                )
                break
    assert not reachable("127.0.0.1", broker.port)


async def test_an_mqtt5_only_link_is_refused_or_unanswered():
    async with EmbeddedBroker() as broker:
        # Without a will amqtt refuses the v5 CONNECT outright...
        client_link = MqttLink(config_for(broker.port, "5"), availability=False)
        with pytest.raises(ConnectRefusedError, match="unsupported MQTT version") as caught:
            await client_link.__aenter__()
        assert caught.value.code == 132 and client_link.state is LinkState.FAILED
        # ...with one its parser waits for bytes that never come: no CONNACK, an error that may pass.
        config = config_for(broker.port, "5").model_copy(update={"connect_timeout_s": 0.5})
        agent_link = MqttLink(config, require_connection=True)
        with pytest.raises(ConnectError, match="no CONNACK"):
            await agent_link.__aenter__()
