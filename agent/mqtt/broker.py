"""An embedded MQTT broker (amqtt, pure Python) for the zero-install demo: MQTT 3.1.1, anonymous, in memory.

amqtt refuses MQTT 5 connects, so links to it must use protocol "3.1.1" or "auto" (which falls back); the
JSON `id`/`reply_to` request path works there, v5 response topics do not. Bind it to loopback only.
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType
from typing import Any, Self

from agent.mqtt.connect import bounded
from agent.mqtt.errors import LinkError

logger = logging.getLogger(__name__)


class EmbeddedBroker:
    """An in-process amqtt broker, started and stopped as an async context manager.

    Args:
        host: address to listen on (keep it loopback: the broker has no authentication).
        port: TCP port; 0 picks a free one (read it from `port` once started).
        timeout_s: limit on starting and on stopping (seconds).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 10.0) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0-65535, got {port}")
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._broker: Any = None

    @property
    def running(self) -> bool:
        """Whether the broker is accepting connections."""
        return self._broker is not None

    async def __aenter__(self) -> Self:
        """Start listening.

        Raises:
            LinkError: amqtt is not installed, or the broker did not start (port taken, timeout).
        """
        if self._broker is not None:
            raise LinkError("the embedded broker is already running")
        try:
            from amqtt.broker import Broker  # optional: only the embedded broker needs amqtt
        except ImportError as exc:
            raise LinkError("the embedded broker needs the amqtt package: pip install amqtt") from exc
        port = self.port or _free_port(self.host)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        try:
            await bounded(broker.start(), self.timeout_s, "starting the embedded broker")
        except Exception as exc:
            raise LinkError(f"the embedded broker did not start on {self.host}:{port}: {exc}") from exc
        self._broker, self.port = broker, port
        logger.info("embedded MQTT broker listening on %s:%d", self.host, port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the broker (its retained messages are lost)."""
        await self.close()

    async def close(self) -> None:
        """Stop listening and drop every session; safe to call twice."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            await bounded(broker.shutdown(), self.timeout_s, "stopping the embedded broker")
        except Exception as exc:  # a broker that cannot stop cleanly must not break the agent's shutdown
            logger.warning("embedded broker did not stop cleanly: %s", exc)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
