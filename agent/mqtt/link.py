"""The agent's broker connection: aiomqtt 2.x behind an adapter with a will, reconnects and bounded queues.

`MqttLink` is an async context manager. Opening it connects once (raising `ConnectRefusedError` when the
broker refuses the config), then a supervisor task keeps it connected: on every (re)connect it subscribes,
re-publishes the retained topics it owns, publishes `online` and flushes the outbox. Closing publishes
`stopped` (retained) before a clean disconnect, so only a crash leaves the will's `offline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import ssl
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self, cast

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt.config import MqttConfig
from agent.mqtt.connect import (
    TIMED_OUT,
    UNSUPPORTED_VERSION,
    NoConnackError,
    SocketErrorCapture,
    abandon,
    bounded,
    forward_until_disconnect,
    refused_or_not,
    set_once,
    tls_context,
    translate,
)
from agent.mqtt.errors import (
    ConnectError,
    ConnectRefusedError,
    LinkClosedError,
    LinkError,
    RequestError,
    TopicError,
)
from agent.mqtt.inbox import Inbox, IncomingMessage
from agent.mqtt.messages import AskRequest
from agent.mqtt.topics import Topics, check_prefix, check_topic
from common.backoff import Backoff
from common.cancel import stop_task

logger = logging.getLogger(__name__)
Version = Literal["5", "3.1.1"]
MAX_FLUSH_ATTEMPTS = 3  # a queued message that breaks this many connections is dropped (a poison message)
V5_PROBE_S = 2.0  # under "auto", how long the v5 attempt waits for a CONNACK before trying 3.1.1
_VERSIONS: dict[str, tuple[Version, ...]] = {"5": ("5",), "3.1.1": ("3.1.1",), "auto": ("5", "3.1.1")}
_PROTOCOL = {"5": aiomqtt.ProtocolVersion.V5, "3.1.1": aiomqtt.ProtocolVersion.V311}


class LinkState(StrEnum):
    """Where the link is: `failed` only when the first connect was refused or the supervisor crashed."""

    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(slots=True)
class LinkCounters:
    """Counters since the link was created."""

    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    received: int = 0
    incoming_dropped: int = 0
    published: int = 0
    queued_while_down: int = 0
    outbox_dropped: int = 0
    retained_evicted: int = 0


@dataclass(slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    correlation_data: bytes | None
    attempts: int = 0  # failed flushes; a message that keeps failing is dropped, not retried forever


class MqttLink:
    """A resilient MQTT connection for the agent (or a client of it).

    Args:
        config: broker, identity, TLS, timeouts, back-off and queue bounds.
        subscriptions: topic filters to subscribe to (QoS 1) on every connect; default: the agent's commands.
        availability: set the will and publish `online`/`stopped` on `<prefix>/available` (off for clients).
        require_connection: raise `ConnectError` from `__aenter__` if the first connect fails, instead of
            retrying in the background.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        subscriptions: Sequence[str] | None = None,
        availability: bool = True,
        require_connection: bool = False,
    ) -> None:
        self.config = config
        self.topics = Topics(config.prefix)
        self._extra_roots: set[str] = set()  # e.g. Home Assistant's discovery prefix
        self.subscriptions = tuple(self.topics.commands if subscriptions is None else subscriptions)
        self.availability = availability
        self.require_connection = require_connection
        self._counters = LinkCounters()
        self.last_error: str | None = None
        self._state = LinkState.NEW
        self._protocol: Version | None = None
        self._versions = _VERSIONS[config.protocol]
        self._client: aiomqtt.Client | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._inbox = Inbox(config.max_queued_incoming, config.incoming_drop_policy)
        self._outbox: deque[_Outgoing] = deque()
        self._retained: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self._socket_error: asyncio.Future[str] | None = None
        self._random = random.Random()
        # Handed to aiomqtt as its `logger`; one per link, so the socket errors its handler sees are ours.
        self._paho_logger = logging.Logger("agent.mqtt.paho")
        self._paho_logger.parent = logging.getLogger("agent.mqtt.paho")
        self._paho_logger.addHandler(SocketErrorCapture(self._note_socket_error))

    # ---- state -------------------------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        """The link's current state."""
        return self._state

    @property
    def protocol(self) -> Version | None:
        """The MQTT version of the current (or last) connection: "5" or "3.1.1"; None before any."""
        return self._protocol

    @property
    def connected(self) -> bool:
        """Whether the link is connected now."""
        return self._state is LinkState.CONNECTED

    @property
    def queued_incoming(self) -> int:
        """Messages received and not yet consumed."""
        return len(self._inbox)

    @property
    def queued_outgoing(self) -> int:
        """Non-retained messages waiting for a connection."""
        return len(self._outbox)

    @property
    def counters(self) -> LinkCounters:
        """A snapshot of the counters."""
        return dataclasses.replace(
            self._counters, received=self._inbox.received, incoming_dropped=self._inbox.dropped
        )

    def _set_state(self, state: LinkState) -> None:
        if state is not self._state:
            logger.info("mqtt link %s:%s: %s", self.config.host, self.config.port, state)
            self._state = state

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Connect once, then keep connected in the background.

        Raises:
            ConnectRefusedError: the broker refused the credentials, certificate or MQTT version.
            ConnectError: the first connect failed and `require_connection` is set.
            LinkError: the link is already open.
        """
        if self._state not in (LinkState.NEW, LinkState.STOPPED, LinkState.FAILED):
            raise LinkError("the MQTT link is already open; it is reusable but not reentrant")
        self._inbox.reopen()
        self._set_state(LinkState.CONNECTING)
        try:
            await self._connect_once()
        except ConnectRefusedError:
            self._set_state(LinkState.FAILED)
            raise
        except LinkError as exc:
            if self.require_connection:
                self._set_state(LinkState.FAILED)
                raise
            logger.warning("mqtt broker unavailable (%s); retrying in the background", exc)
            self._set_state(LinkState.BACKING_OFF)
        except BaseException:  # cancelled mid-connect: leave no connection behind
            client, self._client = self._client, None
            if client is not None:
                await self._disconnect(client)
            self._set_state(LinkState.STOPPED)
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="mqtt-link-supervisor")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close; an `Exception` escaping the block leaves `offline` instead of `stopped`."""
        await self.close(stopped=not isinstance(exc, Exception))

    async def close(self, *, stopped: bool = True) -> None:
        """Publish `stopped` (or `offline`) retained, disconnect cleanly and end the message iterator.

        Safe to call twice; never raises for a broker that is already gone.
        """
        if self._state in (LinkState.NEW, LinkState.STOPPED):
            self._set_state(LinkState.STOPPED)
            return
        if self._supervisor is not None:
            await stop_task(self._supervisor, "the MQTT link's supervisor")
            self._supervisor = None
        client, self._client = self._client, None
        if client is not None:
            if self.availability:
                with contextlib.suppress(LinkError):
                    payload = b"stopped" if stopped else b"offline"
                    await self._send(client, _Outgoing(self.topics.available, payload, 1, None), retain=True)
            await self._disconnect(client)
        self._inbox.close()
        self._set_state(LinkState.STOPPED)

    # ---- receiving ---------------------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> IncomingMessage:
        """The next message, waiting through reconnects.

        Raises:
            LinkTimeoutError: nothing arrived within `timeout` seconds.
            LinkClosedError: the link was closed (or is closed while waiting).
            LinkError: the link's supervisor failed.
        """
        if timeout is None:
            return await self._inbox.get()
        return await bounded(self._inbox.get(), timeout, "waiting for a message")

    async def messages(self) -> AsyncIterator[IncomingMessage]:
        """Iterate over incoming messages; ends when the link closes, raises if the link fails."""
        while True:
            try:
                yield await self._inbox.get()
            except LinkClosedError:
                return

    def _receive(self, message: aiomqtt.Message) -> None:
        props = message.properties if self._protocol == "5" else None
        correlation = getattr(props, "CorrelationData", None)
        payload = message.payload
        self._inbox.offer(
            IncomingMessage(
                topic=str(message.topic),
                payload=bytes(payload)
                if isinstance(payload, bytes | bytearray)
                else str(payload or "").encode(),
                response_topic=getattr(props, "ResponseTopic", None),
                correlation_data=bytes(correlation) if correlation is not None else None,
                retain=bool(message.retain),
            )
        )

    # ---- publishing --------------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        retain: bool = False,
        qos: int = 1,
        correlation_data: bytes | None = None,
    ) -> bool:
        """Publish under the prefix; while disconnected, queue instead of failing.

        A retained topic's latest payload is remembered and re-published after every reconnect (an empty
        payload clears it); a non-retained message published while down waits in the outbox
        (`max_queued_outgoing`, oldest dropped and counted). Correlation data is sent only over MQTT v5.

        Returns:
            True if the broker acknowledged it now (QoS 1/2) or it was sent (QoS 0); False if it was queued.

        Raises:
            TopicError: the topic is not a publish topic below the prefix.
            LinkClosedError: the link is not open.
        """
        if self._state in (LinkState.NEW, LinkState.STOPPED, LinkState.FAILED):
            raise LinkClosedError(f"cannot publish to {topic!r}: the MQTT link is {self._state}")
        check_topic(topic)
        if not self.topics.is_under_prefix(topic) and not any(
            topic.startswith(root + "/") for root in self._extra_roots
        ):
            raise TopicError(f"topic {topic!r} is outside the prefix {self.topics.prefix!r}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        message = _Outgoing(
            topic, payload.encode() if isinstance(payload, str) else bytes(payload), qos, correlation_data
        )
        if retain:
            self._remember(message)
        client = self._client
        if client is not None and self._state is LinkState.CONNECTED:
            try:
                await self._send(client, message, retain=retain)
                return True
            except LinkError as exc:
                logger.warning("mqtt publish to %s failed (%s); queued for the reconnect", topic, exc)
        if not retain:
            self._enqueue(message)
        self._counters.queued_while_down += 1
        return False

    def allow_root(self, root: str) -> None:
        """Also allow publishing below `root` (Home Assistant's discovery prefix lies outside ours)."""
        self._extra_roots.add(check_prefix(root))

    def reply_target(
        self, request: AskRequest | RequestError | None, incoming: IncomingMessage | None
    ) -> tuple[str, bytes | None]:
        """Where a reply goes: `reply_to`, else the v5 response topic (below `<prefix>/answer/`) with its
        correlation data, else `<prefix>/answer/<id>`, else `<prefix>/errors` (no readable id).

        A request that came on a client's topic (`<prefix>/ask/<client>`) is answered below
        `<prefix>/answer/<client>/` only (`Topics.reply_target`)."""
        request_id: str | None = None
        reply_to: str | None = None
        if isinstance(request, AskRequest):
            request_id, reply_to = request.id, request.reply_to
        elif isinstance(request, RequestError):
            request_id, reply_to = request.request_id, request.reply_to
        return self.topics.reply_target(
            request_id=request_id,
            reply_to=reply_to,
            response_topic=incoming.response_topic if incoming else None,
            correlation_data=incoming.correlation_data if incoming else None,
            client=self.topics.client_of(incoming.topic) if incoming else None,
        )

    async def reply(
        self,
        request: AskRequest | RequestError | None,
        incoming: IncomingMessage | None,
        payload: bytes,
    ) -> str:
        """Publish `payload` (QoS 1, not retained) to `reply_target(request, incoming)`; returns the topic."""
        topic, correlation_data = self.reply_target(request, incoming)
        await self.publish(topic, payload, qos=1, correlation_data=correlation_data)
        return topic

    def _remember(self, message: _Outgoing) -> None:
        # Empty payloads stay too: re-sending a clear after a reconnect is harmless and keeps it cleared.
        self._retained.pop(message.topic, None)
        self._retained[message.topic] = (message.payload, message.qos)
        while len(self._retained) > self.config.max_retained_topics:
            self._retained.popitem(last=False)
            self._counters.retained_evicted += 1

    def _enqueue(self, message: _Outgoing) -> None:
        if self.config.max_queued_outgoing == 0:
            self._counters.outbox_dropped += 1
            return
        if len(self._outbox) >= self.config.max_queued_outgoing:
            self._outbox.popleft()
            self._counters.outbox_dropped += 1
        self._outbox.append(message)

    async def _send(self, client: aiomqtt.Client, message: _Outgoing, *, retain: bool = False) -> None:
        properties = None
        if message.correlation_data is not None and self._protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = message.correlation_data
        try:
            await bounded(
                client.publish(
                    message.topic, message.payload, message.qos, retain, properties, timeout=math.inf
                ),
                self.config.publish_timeout_s,
                f"publishing to {message.topic}",
            )
        except aiomqtt.MqttError as exc:
            raise ConnectError(f"publishing to {message.topic} failed: {exc}") from exc
        self._counters.published += 1

    # ---- connecting --------------------------------------------------------------------------------------

    async def _connect_once(self) -> None:
        """Connect (under "auto": v5, then 3.1.1), subscribe and announce; sets CONNECTED.

        Raises:
            ConnectRefusedError: refused for good. ConnectError: anything that may pass.
        """
        versions = self._versions
        for index, version in enumerate(versions):
            probing = index + 1 < len(versions)
            try:
                client = await self._open_client(version, probing=probing)
            except ConnectError as exc:
                silent = isinstance(exc, NoConnackError) or getattr(exc, "code", None) == UNSUPPORTED_VERSION
                if probing and silent:
                    logger.warning("broker did not accept MQTT 5 (%s); falling back to 3.1.1", exc)
                    continue
                self._failed(exc)
                raise
            break
        if len(versions) > 1 and version != versions[0]:
            self._versions = (version,)  # this broker speaks 3.1.1 only: skip the v5 probe on reconnects
        self._protocol = version
        self._client = client
        try:
            await self._announce(client)
        except LinkError as exc:
            self._client = None
            await self._disconnect(client)
            self._failed(exc)
            if isinstance(exc, ConnectRefusedError):
                raise
            raise ConnectError(f"connection lost while subscribing/announcing: {exc}") from exc
        self._counters.connects += 1
        self.last_error = None
        self._set_state(LinkState.CONNECTED)

    def _failed(self, exc: LinkError) -> None:
        self._counters.connect_failures += 1
        self.last_error = str(exc)
        logger.debug("mqtt connect to %s:%s failed: %s", self.config.host, self.config.port, exc)

    def _new_client(self, version: Version, tls: ssl.SSLContext | None, connack_s: float) -> aiomqtt.Client:
        """A client through aiomqtt's public options. Its own incoming queue stays unbounded: the supervisor
        drains it into the inbox at once (`forward_until_disconnect`), and the inbox applies our bound and
        drop policy and counts what it drops."""
        config = self.config
        will = (
            aiomqtt.Will(self.topics.available, b"offline", qos=1, retain=True) if self.availability else None
        )
        return aiomqtt.Client(
            config.host,
            config.port,
            identifier=config.client_id,
            protocol=_PROTOCOL[version],
            username=config.username,
            password=config.password.get_secret_value() if config.password is not None else None,
            will=will,
            keepalive=config.keepalive_s,
            timeout=connack_s,
            tls_context=tls,
            tls_insecure=True if config.tls is not None and config.tls.insecure else None,
            logger=self._paho_logger,
        )

    async def _open_client(self, version: Version, *, probing: bool) -> aiomqtt.Client:
        """One connect attempt; a v5 probe waits at most V5_PROBE_S for a CONNACK (amqtt may send none)."""
        connack_s = (
            min(self.config.connect_timeout_s, V5_PROBE_S) if probing else self.config.connect_timeout_s
        )
        tls = tls_context(self.config.tls) if self.config.tls is not None else None
        client = self._new_client(version, tls, connack_s)
        self._socket_error = asyncio.get_running_loop().create_future()
        enter: asyncio.Future[Any] = asyncio.ensure_future(client.__aenter__())
        waiters: set[asyncio.Future[Any]] = {enter, self._socket_error}
        limit = self.config.connect_timeout_s + connack_s + 1  # the socket connect, then the CONNACK wait
        try:
            done, _ = await asyncio.wait(waiters, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await abandon(enter, client)
            raise
        finally:
            socket_error, self._socket_error = self._socket_error, None
        if enter in done and enter.exception() is None:
            return client
        await abandon(enter, client)
        where = f"{self.config.host}:{self.config.port}"
        if socket_error.done():
            raise refused_or_not(f"{where} closed the connection: {socket_error.result()}", self.config)
        error = enter.exception() if enter.done() and not enter.cancelled() else None
        if error is None or str(error) == TIMED_OUT:
            raise NoConnackError(f"no CONNACK from {where} within {connack_s:g} s (MQTT {version})")
        raise translate(cast(aiomqtt.MqttError, error), where, self.config)

    def _note_socket_error(self, message: str) -> None:
        # paho logs from the event loop thread (aiomqtt drives its reads there); guard the future anyway.
        future = self._socket_error
        if future is not None and not future.done():
            future.get_loop().call_soon_threadsafe(set_once, future, message)

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Subscribe, re-publish owned retained topics, publish `online`, flush the outbox."""
        await self._subscribe(client)
        sent: dict[str, tuple[bytes, int]] = {}
        await self._sync_retained(client, sent)
        if self.availability:
            await self._send(client, _Outgoing(self.topics.available, b"online", 1, None), retain=True)
        while True:  # until nothing changed while we were sending
            await self._sync_retained(client, sent)
            if not self._outbox:
                return
            message = self._outbox[0]
            try:
                await self._send(client, message)
            except LinkError:
                message.attempts += 1
                if message.attempts >= MAX_FLUSH_ATTEMPTS and self._outbox and self._outbox[0] is message:
                    self._outbox.popleft()
                    self._counters.outbox_dropped += 1
                raise
            if self._outbox and self._outbox[0] is message:
                self._outbox.popleft()

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        if not self.subscriptions:
            return
        try:
            granted = await bounded(
                client.subscribe([(topic, 1) for topic in self.subscriptions], timeout=math.inf),
                self.config.publish_timeout_s,
                "subscribing",
            )
        except aiomqtt.MqttError as exc:
            raise ConnectError(f"subscribing to {', '.join(self.subscriptions)} failed: {exc}") from exc
        for topic, code in zip(self.subscriptions, granted, strict=False):
            if (code.value if isinstance(code, ReasonCode) else int(cast(int, code))) >= 0x80:
                raise ConnectRefusedError(f"the broker refused the subscription to {topic} (check its ACL)")

    async def _sync_retained(self, client: aiomqtt.Client, sent: dict[str, tuple[bytes, int]]) -> None:
        while True:
            pending = [(t, v) for t, v in self._retained.items() if sent.get(t) is not v]
            if not pending:
                return
            for topic, value in pending:
                await self._send(client, _Outgoing(topic, value[0], value[1], None), retain=True)
                sent[topic] = value

    async def _disconnect(self, client: aiomqtt.Client) -> None:
        try:
            await bounded(client.__aexit__(None, None, None), self.config.publish_timeout_s, "disconnecting")
        except (LinkError, aiomqtt.MqttError) as exc:
            logger.debug("mqtt disconnect was not clean: %s", exc)

    # ---- supervision -------------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            backoff = Backoff(self.config.backoff, rng=self._random)
            while True:
                client = self._client
                if client is not None:
                    reason = await forward_until_disconnect(client, self._receive)
                    self._client = None
                    self._counters.disconnects += 1
                    self.last_error = reason
                    logger.warning("mqtt connection lost: %s", reason)
                    await self._disconnect(client)
                self._set_state(LinkState.BACKING_OFF)
                await asyncio.sleep(backoff.next_delay())
                self._set_state(LinkState.CONNECTING)
                try:
                    await self._connect_once()
                    backoff.reset()
                except LinkError as exc:
                    if backoff.failures % 10 == 1:  # the first failure of an outage, then every tenth
                        logger.warning("mqtt reconnect attempt %d failed: %s", backoff.failures, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("mqtt link supervisor crashed")
            self.last_error = f"supervisor crashed: {exc!r}"
            self._set_state(LinkState.FAILED)
            self._inbox.close(LinkError(self.last_error))
