"""The cluster as one snapshot (who owns what, lease ages, capacity), for the CLI, MQTT and metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from agent.cluster.config import ClusterConfig
from agent.cluster.leases import LeaseStore
from agent.cluster.registry import Registry
from agent.memory.redis_scripts import KeyLayout


class StreamOwnership(BaseModel):
    """One stream: its owner (None while free), fencing token and lease timing."""

    stream: str
    owner: str | None
    token: int | None = Field(None, title="Fencing token of the current lease")
    lease_ttl_s: float | None = Field(None, title="Seconds left before the lease expires unless renewed")
    held_s: float | None = Field(None, title="Seconds since the owner claimed it")
    pin: dict[str, str] = Field(default_factory=dict, title="Labels an owner must carry")


class AgentView(BaseModel):
    """One agent as the cluster sees it."""

    id: str
    host: str
    alive: bool
    capacity: int
    labels: dict[str, str]
    streams: list[str]
    seen_s: float = Field(title="Seconds since its last heartbeat")


class ClusterStatus(BaseModel):
    """Every agent and every stream of a cluster."""

    agents: list[AgentView]
    streams: list[StreamOwnership]
    unowned: list[str]
    updated_at: datetime

    def payload(self) -> bytes:
        return self.model_dump_json().encode()

    def table(self) -> str:
        """A plain-text rendering for `flexselect-agent cluster status`."""
        lines = [f"{'AGENT':<28} {'ALIVE':<5} {'STREAMS':>7} {'CAP':>4} {'SEEN':>6}  LABELS"]
        for a in self.agents:
            labels = ",".join(f"{k}={v}" for k, v in sorted(a.labels.items())) or "-"
            lines.append(
                f"{a.id:<28} {'yes' if a.alive else 'no':<5} {len(a.streams):>7} {a.capacity:>4} "
                f"{a.seen_s:>5.1f}s  {labels}"
            )
        lines.append("")
        lines.append(f"{'STREAM':<24} {'OWNER':<28} {'TOKEN':>5} {'HELD':>8} {'LEASE':>6}")
        for s in self.streams:
            held = f"{s.held_s:.1f}s" if s.held_s is not None else "-"
            ttl = f"{s.lease_ttl_s:.1f}s" if s.lease_ttl_s is not None else "-"
            lines.append(f"{s.stream:<24} {s.owner or '(free)':<28} {s.token or '-':>5} {held:>8} {ttl:>6}")
        return "\n".join(lines)


async def read_status(client: Any, keys: KeyLayout, config: ClusterConfig) -> ClusterStatus:
    """Read the registry and every stream's lease from Redis."""
    registry = Registry(client, keys.prefix)
    leases = LeaseStore(client, keys, config.agent_id, config.lease_s)
    now = time.time()
    agents = await registry.agents()
    streams = await registry.streams()
    owned: list[StreamOwnership] = []
    for stream in sorted(streams):
        lease = await leases.read(stream)
        info = agents.get(lease.agent) if lease else None
        claimed = info[0].streams.get(stream) if info else None
        owned.append(
            StreamOwnership(
                stream=stream,
                owner=lease.agent if lease else None,
                token=lease.token if lease else None,
                lease_ttl_s=lease.ttl_s if lease else None,
                held_s=now - claimed if claimed is not None else None,
                pin=config.pins.get(stream, {}),
            )
        )
    views = [
        AgentView(
            id=info.id,
            host=info.host,
            alive=alive,
            capacity=info.capacity,
            labels=info.labels,
            streams=sorted(s.stream for s in owned if s.owner == info.id),
            seen_s=max(now - info.seen_at, 0.0),
        )
        for info, alive in sorted(agents.values(), key=lambda a: a[0].id)
    ]
    return ClusterStatus(
        agents=views,
        streams=owned,
        unowned=[s.stream for s in owned if s.owner is None],
        updated_at=datetime.now(UTC),
    )
