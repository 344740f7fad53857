"""The bounded queue of received messages between the broker connection and the agent."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from agent.mqtt.config import DropPolicy
from agent.mqtt.errors import LinkClosedError

logger = logging.getLogger(__name__)
DROP_LOG_EVERY = 1000  # the first drop is logged, then every this many (a flood must not flood the log too)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message on one of the link's subscriptions; v5 properties are set only on a v5 connection."""

    topic: str
    payload: bytes
    response_topic: str | None = None
    correlation_data: bytes | None = None
    retain: bool = False


class Inbox:
    """The bounded queue between the broker and the consumer; full: drop the oldest or the newest, counted."""

    def __init__(self, maxsize: int, policy: DropPolicy) -> None:
        self._items: deque[IncomingMessage] = deque()
        self._maxsize = maxsize
        self._drop_oldest = policy == "drop_oldest"
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, message: IncomingMessage) -> None:
        """Queue `message`, applying the drop policy when full."""
        self.received += 1
        if len(self._items) >= self._maxsize:
            self.dropped += 1
            if self.dropped % DROP_LOG_EVERY == 1 or DROP_LOG_EVERY == 1:
                logger.warning(
                    "mqtt inbox full (%d messages): dropped the %s message; %d dropped so far, unanswered",
                    self._maxsize,
                    "oldest" if self._drop_oldest else "newest",
                    self.dropped,
                )
            if not self._drop_oldest:
                return
            self._items.popleft()
        self._items.append(message)
        self._ready.set()

    def reopen(self) -> None:
        """Accept messages again after `close` (the counts carry on)."""
        self._closed, self._error = False, None
        self._ready.clear()

    def close(self, error: BaseException | None = None) -> None:
        """Drop what is queued and make `get` raise `error` (default `LinkClosedError`)."""
        self._closed, self._error = True, error
        self._items.clear()
        self._ready.set()

    async def get(self) -> IncomingMessage:
        """The oldest queued message, waiting for one if none is queued."""
        while True:
            if self._closed:
                raise self._error or LinkClosedError("the MQTT link is closed")
            if self._items:
                message = self._items.popleft()
                if not self._items:
                    self._ready.clear()
                return message
            await self._ready.wait()
