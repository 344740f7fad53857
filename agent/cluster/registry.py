"""The shared state of a cluster in Redis: the stream set and the agents, with their liveness keys.

Keys under the memory's prefix P (single-key operations only, so any Redis Cluster slot layout works):
    P:cluster:streams          hash    stream id -> StreamSection JSON (from configs or MQTT commands)
    P:cluster:agents           hash    agent id -> AgentInfo JSON (refreshed every tick)
    P:cluster:{agent}:alive    string  "1" with the lease TTL: the agent is alive while it exists
    P:cluster:q:{digest}       string  a question's claim, "taken <agent>" or "done" (journal.py)
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.config import StreamSection


class AgentInfo(BaseModel):
    """What an agent says of itself on every tick."""

    model_config = ConfigDict(extra="ignore")

    id: str
    host: str
    pid: int
    capacity: int
    labels: dict[str, str] = Field(default_factory=dict)
    streams: dict[str, float] = Field(default_factory=dict, title="Owned stream -> Unix time claimed")
    started_at: float
    seen_at: float
    leaving: bool = Field(False, title="Stopping: alive until its last reply, but takes no streams")


class Registry:
    """Reads and writes the cluster's shared state (one client, plain single-key commands)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def streams_key(self) -> str:
        return f"{self._prefix}:cluster:streams"

    @property
    def agents_key(self) -> str:
        return f"{self._prefix}:cluster:agents"

    def alive_key(self, agent: str) -> str:
        return f"{self._prefix}:cluster:{{{agent}}}:alive"

    async def put_streams(self, sections: list[StreamSection]) -> None:
        """Add or replace streams in the shared set."""
        if sections:
            mapping = {s.id: s.model_dump_json() for s in sections}
            await self._client.hset(self.streams_key, mapping=mapping)

    async def remove_stream(self, stream_id: str) -> bool:
        """Drop a stream from the shared set (its owner stops ingesting it on its next tick)."""
        return bool(await self._client.hdel(self.streams_key, stream_id))

    async def streams(self) -> dict[str, StreamSection]:
        """Every stream of the cluster."""
        raw = await self._client.hgetall(self.streams_key)
        return {_text(k): StreamSection.model_validate_json(v) for k, v in raw.items()}

    async def heartbeat(self, info: AgentInfo, ttl_s: float) -> None:
        """Say the agent is alive for another `ttl_s` and publish what it owns."""
        await self._client.set(self.alive_key(info.id), b"1", px=int(ttl_s * 1000))
        await self._client.hset(self.agents_key, info.id, info.model_dump_json())

    async def agents(self) -> dict[str, tuple[AgentInfo, bool]]:
        """Every agent that registered, with whether its liveness key still exists."""
        raw = await self._client.hgetall(self.agents_key)
        out: dict[str, tuple[AgentInfo, bool]] = {}
        for k, v in raw.items():
            info = AgentInfo.model_validate(json.loads(v))
            out[_text(k)] = (info, bool(await self._client.exists(self.alive_key(info.id))))
        return out

    async def alive(self, agent: str) -> bool:
        """Whether the agent's liveness key exists (it heartbeated within its lease)."""
        return bool(await self._client.exists(self.alive_key(agent)))

    async def forget(self, agent: str) -> None:
        """Remove an agent that left, or died and holds no lease any more."""
        await self._client.hdel(self.agents_key, agent)
        await self._client.delete(self.alive_key(agent))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def now() -> float:
    return time.time()
