"""Questions in flight, journaled in Redis so that none is lost without a reply when its agent dies.

An agent writes each question it took (from the shared subscription) to its inflight hash first thing,
before parsing it, and deletes it once the reply is published. When an agent's liveness key expires, the
first survivor to notice adopts its hash atomically (ADOPT: read and delete in one script, only if the
owner is still dead) and answers those questions itself, late. The one gap left: a question acknowledged
to the broker (MQTT PUBACK goes out on receipt) but not yet journaled when the agent dies. A reply published
just before a kill -9 and its journal delete can be answered twice; askers match replies by request id.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import uuid
from typing import Any

from agent.cluster.registry import Registry
from agent.mqtt import IncomingMessage

logger = logging.getLogger(__name__)

# KEYS: alive, inflight. Returns the journal's entries (flat field/value list) if the owner is dead, else {}.
ADOPT = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local entries = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2])
return entries
"""


def encode(message: IncomingMessage) -> str:
    """The question as received (topic, payload, v5 response topic and correlation data) as JSON."""
    return json.dumps(
        {
            "topic": message.topic,
            "payload": base64.b64encode(message.payload).decode(),
            "response_topic": message.response_topic,
            "correlation": base64.b64encode(message.correlation_data).decode()
            if message.correlation_data is not None
            else None,
        }
    )


def decode(raw: bytes | str) -> IncomingMessage:
    data = json.loads(raw)
    return IncomingMessage(
        topic=data["topic"],
        payload=base64.b64decode(data["payload"]),
        response_topic=data["response_topic"],
        correlation_data=base64.b64decode(data["correlation"]) if data["correlation"] is not None else None,
        retain=False,
    )


class Journal:
    """This agent's inflight hash, and the adoption of dead agents' hashes."""

    def __init__(self, client: Any, registry: Registry, agent_id: str) -> None:
        self._client = client
        self._registry = registry
        self._key = registry.inflight_key(agent_id)

    async def add(self, message: IncomingMessage) -> str:
        """Journal a question as received (before it is even parsed); returns the entry's id."""
        entry = uuid.uuid4().hex
        try:
            await self._client.hset(self._key, entry, encode(message))
        except Exception as exc:  # the question is still answered; only its takeover cover is missing
            logger.warning("a question was not journaled: %s", exc)
        return entry

    async def remove(self, entry: str) -> None:
        """Drop an entry once its reply is published."""
        with contextlib.suppress(Exception):
            await self._client.hdel(self._key, entry)

    async def adopt(self, dead_agent: str) -> list[IncomingMessage]:
        """Take over a dead agent's unanswered questions (empty if it is alive or another survivor won)."""
        raw = await self._client.eval(
            ADOPT, 2, self._registry.alive_key(dead_agent), self._registry.inflight_key(dead_agent)
        )
        messages = []
        for i in range(0, len(raw), 2):
            try:
                messages.append(decode(raw[i + 1]))
            except (ValueError, KeyError) as exc:
                logger.error("journal entry %r of %s does not decode: %s", raw[i], dead_agent, exc)
        return messages

    async def clear(self) -> None:
        """Drop this agent's journal (on a clean leave, after every question got its reply)."""
        await self._client.delete(self._key)
