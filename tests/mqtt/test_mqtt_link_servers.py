"""The link against Mosquitto servers of the test's own: passwords, TLS with client certificates, restarts."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from agent.mqtt import (
    BackoffConfig,
    ConnectError,
    ConnectRefusedError,
    LinkState,
    LinkTimeoutError,
    MqttConfig,
    MqttLink,
)
from tests.mqtt.mqtt_helpers import read_retained, wait_until

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]


def config_for(port: int, **overrides: object) -> MqttConfig:
    prefix = f"fsatest-{uuid.uuid4().hex[:8]}"
    values: dict[str, object] = {
        "port": port,
        "prefix": prefix,
        "client_id": prefix,
        "connect_timeout_s": 3.0,
        "publish_timeout_s": 3.0,
        "backoff": BackoffConfig(base_s=0.05, cap_s=0.2, jitter=0.1),
    }
    return MqttConfig(**(values | overrides))


@pytest.fixture
def password_broker(mosquitto, tmp_path):
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "agent", "s3cret"], check=True)
    return mosquitto("allow_anonymous false", f"password_file {passwords}")


@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
async def test_a_wrong_password_is_refused_with_a_clear_error_state(password_broker, protocol):
    link = MqttLink(config_for(password_broker.port, protocol=protocol, username="agent", password="wrong"))
    with pytest.raises(ConnectRefusedError, match="not authorised"):
        await link.__aenter__()
    assert link.state is LinkState.FAILED
    assert "not authorised" in (link.last_error or "")
    await link.close()


async def test_the_right_password_connects(password_broker):
    config = config_for(password_broker.port, username="agent", password="s3cret")
    async with MqttLink(config, subscriptions=[f"{config.prefix}/ask"]) as link:
        assert link.connected
        await link.publish(link.topics.ask, b"hello")
        assert (await link.receive(timeout=3)).payload == b"hello"


@pytest.fixture
def tls_broker(mosquitto, tls_files):
    return mosquitto(
        "allow_anonymous true",
        f"cafile {tls_files['ca.crt']}",
        f"certfile {tls_files['server.crt']}",
        f"keyfile {tls_files['server.key']}",
        "require_certificate true",
    )


async def test_tls_with_a_client_certificate_connects(tls_broker, tls_files):
    tls = {
        "ca_file": tls_files["ca.crt"],
        "cert_file": tls_files["client.crt"],
        "key_file": tls_files["client.key"],
    }
    config = config_for(tls_broker.port, tls=tls)
    async with MqttLink(config) as link:
        assert link.connected
        await link.publish(link.topics.ask, b"over tls")
        assert (await link.receive(timeout=3)).payload == b"over tls"


async def test_tls_without_the_client_certificate_is_refused_promptly(tls_broker, tls_files):
    link = MqttLink(config_for(tls_broker.port, tls={"ca_file": tls_files["ca.crt"]}))
    started = time.monotonic()
    with pytest.raises(ConnectRefusedError, match=r"(?i)certificate"):
        await link.__aenter__()
    assert time.monotonic() - started < 3.0  # the TLS alert ends the attempt, not the CONNACK timeout
    assert link.state is LinkState.FAILED


async def test_tls_with_an_untrusted_broker_certificate_is_refused(tls_broker, tls_files):
    tls = {"cert_file": tls_files["client.crt"], "key_file": tls_files["client.key"]}  # system CAs only
    with pytest.raises(ConnectRefusedError, match="CERTIFICATE_VERIFY_FAILED"):
        async with MqttLink(config_for(tls_broker.port, tls=tls)):
            pass


async def test_an_unreachable_broker_fails_fast_only_when_a_connection_is_required(mosquitto):
    from tests.mqtt.mqtt_helpers import free_port

    config = config_for(free_port())
    with pytest.raises(ConnectError):
        async with MqttLink(config, require_connection=True):
            pass
    async with MqttLink(config) as link:  # a long-running agent keeps trying instead
        assert link.state in (LinkState.BACKING_OFF, LinkState.CONNECTING)
        assert await link.publish(link.topics.ask, b"later") is False
        assert link.queued_outgoing == 1


async def test_after_a_broker_restart_the_link_reconnects_and_republishes(mosquitto):
    server = mosquitto()
    config = config_for(server.port)
    status_topic = f"{config.prefix}/cam1/status"
    async with MqttLink(config) as link:
        await link.publish(status_topic, b'{"state": "streaming"}', retain=True)
        server.stop()
        await wait_until(lambda: link.state is not LinkState.CONNECTED, what="the link to notice")
        assert await link.publish(link.topics.ask, b"queued while down") is False
        await link.publish(status_topic, b'{"state": "stalled"}', retain=True)
        server.start()  # same port, no persistence: whatever is retained now came from the link
        await wait_until(lambda: link.connected, timeout=10, what="the reconnect")
        assert (await link.receive(timeout=3)).payload == b"queued while down"  # flushed after resubscribing
        assert await read_retained(link.topics.available, port=server.port) == b"online"
        assert await read_retained(status_topic, port=server.port) == b'{"state": "stalled"}'
        assert (link.counters.connects, link.counters.disconnects) == (2, 1)
        assert link.queued_outgoing == 0
    assert await read_retained(link.topics.available, port=server.port) == b"stopped"


async def test_the_outbox_drops_its_oldest_message_when_full(mosquitto):
    server = mosquitto()
    config = config_for(server.port, max_queued_outgoing=2)
    async with MqttLink(config) as link:
        server.stop()
        await wait_until(lambda: not link.connected, what="the link to notice")
        for n in range(5):
            await link.publish(link.topics.ask, str(n).encode())
        assert (link.queued_outgoing, link.counters.outbox_dropped) == (2, 3)
        server.start()
        await wait_until(lambda: link.connected, timeout=10, what="the reconnect")
        assert [(await link.receive(timeout=3)).payload for _ in range(2)] == [b"3", b"4"]


async def test_an_acl_confined_to_the_prefix_is_all_the_agent_needs(mosquitto, tmp_path):
    passwords, acl = tmp_path / "passwd", tmp_path / "acl"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "agent", "s3cret"], check=True)
    config = config_for(1, username="agent", password="s3cret")  # the port is set once the broker runs
    acl.write_text(f"user agent\ntopic readwrite {config.prefix}/#\n")
    server = mosquitto("allow_anonymous false", f"password_file {passwords}", f"acl_file {acl}")
    async with MqttLink(config.model_copy(update={"port": server.port})) as link:
        await link.publish(link.topics.status("cam1"), b"{}", retain=True)
        await link.publish(link.topics.ask, b"inside the prefix")
        assert (await link.receive(timeout=3)).payload == b"inside the prefix"
    outside = config_for(server.port, username="agent", password="s3cret")
    async with MqttLink(outside) as link:  # mosquitto 2.0 accepts it but delivers nothing outside the ACL
        await link.publish(link.topics.ask, b"outside the prefix")
        with pytest.raises(LinkTimeoutError):
            await link.receive(timeout=0.3)
