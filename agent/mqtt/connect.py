"""The plumbing of one connection through aiomqtt 2.x: timeouts, TLS, error translation, clean give-ups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt.config import MqttConfig, TlsConfig
from agent.mqtt.errors import ConnectError, ConnectRefusedError, LinkTimeoutError

T = TypeVar("T")
# CONNACK codes (v5 numbering; paho maps 3.1.1 codes onto them) that no retry will change.
REFUSED_CODES = {
    132: "unsupported MQTT version",
    133: "client id not valid",
    134: "bad username or password",
    135: "not authorised (check username, password and the broker ACL)",
    138: "client banned",
    140: "bad authentication method",
}
UNSUPPORTED_VERSION = 132


async def bounded(awaitable: Awaitable[T], timeout: float, what: str) -> T:
    """Await `awaitable` for at most `timeout` seconds: the one timeout helper of every network await.

    Raises:
        LinkTimeoutError: naming `what` and the timeout.
    """
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise LinkTimeoutError(f"{what} timed out after {timeout:g} s") from None


class NoConnackError(ConnectError):
    """The broker accepted the socket but sent no CONNACK in time."""


class ForwardingQueue(asyncio.Queue):  # type: ignore[type-arg]
    """aiomqtt's incoming queue, replaced: hands each message to the link and holds none.

    aiomqtt's own message iterator then never yields but still raises on disconnect, which is how the link
    learns of a dropped connection, while the link's inbox survives reconnects and applies its drop policy.
    """

    def __init__(self, sink: Callable[[aiomqtt.Message], None], maxsize: int = 0) -> None:
        super().__init__(maxsize=0)
        self._sink = sink

    def _put(self, item: aiomqtt.Message) -> None:
        self._sink(item)


class SocketErrorCapture(logging.Handler):
    """Passes paho's socket errors to the link: a TLS alert before CONNACK is otherwise only a timeout."""

    def __init__(self, callback: Callable[[str], None]) -> None:
        super().__init__(logging.ERROR)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        self._callback(record.getMessage())


async def wait_for_disconnect(client: aiomqtt.Client) -> str:
    """Wait until `client` disconnects; our forwarding queue means its iterator only ever raises."""
    try:
        async for _ in client.messages:
            pass
    except aiomqtt.MqttError as exc:
        cause = exc.__cause__
        return f"{exc}: {cause}" if cause is not None else str(exc)
    return "the message iterator ended"


async def abandon(enter: asyncio.Future[Any], client: aiomqtt.Client) -> None:
    """Give up a connect attempt and close its socket (aiomqtt leaves it open after a CONNACK timeout)."""
    if not enter.done():
        enter.cancel()
    await asyncio.gather(enter, return_exceptions=True)
    if not enter.cancelled() and enter.exception() is None:  # it connected after all
        with contextlib.suppress(Exception):
            await bounded(client.__aexit__(None, None, None), 5, "disconnecting an abandoned client")
        return
    with contextlib.suppress(Exception):
        # The one reach into aiomqtt's internals: paho's disconnect() sends DISCONNECT and closes the socket.
        client._client.disconnect()


def set_once(future: asyncio.Future[str], message: str) -> None:
    if not future.done():
        future.set_result(message)


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file is not None else None)
        if tls.cert_file is not None:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file) if tls.key_file is not None else None
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConnectRefusedError(f"cannot load the TLS files: {exc}") from exc
    if tls.insecure:
        context.check_hostname = False
    return context


def translate(exc: aiomqtt.MqttError, where: str, config: MqttConfig) -> ConnectError:
    """An aiomqtt connect failure as our error: refused for good, or worth retrying."""
    if isinstance(exc, MqttConnectError):
        code = exc.rc.value if isinstance(exc.rc, ReasonCode) else int(exc.rc or 0)
        if code in REFUSED_CODES:
            return ConnectRefusedError(
                f"broker {where} refused the connection: {REFUSED_CODES[code]}", code=code
            )
        return ConnectError(f"broker {where} refused the connection for now: {exc}")
    return refused_or_not(f"cannot connect to {where}: {exc}", config)


def refused_or_not(message: str, config: MqttConfig) -> ConnectError:
    # TLS verification failures and alerts are configuration problems; plain socket errors may pass.
    if config.tls is not None and ("SSL" in message or "certificate" in message.lower()):
        return ConnectRefusedError(message)
    return ConnectError(message)
