"""The plumbing of one connection through aiomqtt 2.x: timeouts, TLS, error translation, clean give-ups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt.config import MqttConfig, TlsConfig
from agent.mqtt.errors import ConnectError, ConnectRefusedError, LinkTimeoutError
from common.cancel import within

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
ABANDON_S = 0.5  # how long an abandoned, never-connected client's DISCONNECT gets to close its socket
TIMED_OUT = "Operation timed out"  # aiomqtt's MqttError text when its wait (e.g. for the CONNACK) ends


async def bounded(awaitable: Awaitable[T], timeout: float, what: str) -> T:
    """Await `awaitable` for at most `timeout` seconds: the one timeout helper of every network await.

    Raises:
        LinkTimeoutError: naming `what` and the timeout.
    """
    try:
        return await within(awaitable, timeout)
    except TimeoutError:
        raise LinkTimeoutError(f"{what} timed out after {timeout:g} s") from None


class NoConnackError(ConnectError):
    """The broker accepted the socket but sent no CONNACK in time."""


class SocketErrorCapture(logging.Handler):
    """Passes the connection's socket errors to the link: a TLS alert before CONNACK is otherwise only a
    timeout. It sits on the logger the link hands to aiomqtt (its documented `logger` parameter), the one
    place aiomqtt reports why a socket closed before the broker's CONNACK."""

    def __init__(self, callback: Callable[[str], None]) -> None:
        super().__init__(logging.ERROR)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        self._callback(record.getMessage())


async def forward_until_disconnect(client: aiomqtt.Client, sink: Callable[[aiomqtt.Message], None]) -> str:
    """Hand every message `client` receives to `sink` until it disconnects; returns why it disconnected.

    aiomqtt's documented pattern: its message iterator raises `MqttError` when the connection drops, and the
    caller reconnects (the link, with its back-off); the link's inbox survives reconnects.
    """
    try:
        async for message in client.messages:
            sink(message)
    except aiomqtt.MqttError as exc:
        cause = exc.__cause__
        return f"{exc}: {cause}" if cause is not None else str(exc)
    return "the message iterator ended"


async def abandon(enter: asyncio.Future[Any], client: aiomqtt.Client) -> None:
    """Give up a connect attempt and close its socket (aiomqtt leaves it open after a CONNACK timeout).

    Leaving the client's context sends DISCONNECT, which closes the socket; a client still waiting for its
    CONNACK then waits for a disconnect acknowledgement that cannot come, so that wait is cut short. A
    refused or unreachable attempt has no socket left to close.
    """
    if not enter.done():
        enter.cancel()
    await asyncio.gather(enter, return_exceptions=True)
    failed = None if enter.cancelled() else enter.exception()
    if failed is not None and str(failed) != TIMED_OUT:
        return
    limit = 5 if failed is None and not enter.cancelled() else ABANDON_S  # connected after all: say goodbye
    with contextlib.suppress(Exception):
        await bounded(client.__aexit__(None, None, None), limit, "abandoning a client")


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
    if isinstance(exc, aiomqtt.MqttCodeError):  # a CONNACK with a refusal code
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
