"""The `cluster` section of the agent's config: identity, capacity, placement and lease timing."""

from __future__ import annotations

import os
import re
import socket
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

LABEL = r"^[A-Za-z0-9_.-]{1,64}$"


class ClusterConfig(BaseModel):
    """Off by default: a single agent then ingests its configured streams alone, exactly as without it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, title="Share streams and questions with other agents (Redis memory)")
    agent_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
        title="This agent's name in the cluster (default: host-pid)",
    )
    capacity: int = Field(8, ge=0, le=10_000, title="Streams this agent ingests at most (measure per GPU)")
    labels: dict[str, str] = Field(default_factory=dict, title="This agent's labels, e.g. {site: north}")
    pins: dict[str, dict[str, str]] = Field(
        default_factory=dict, title="Stream id -> labels an agent must carry to ingest it"
    )
    lease_s: float = Field(10.0, ge=0.5, le=600, title="Stream lease; a dead agent's streams move after it")
    tick_s: float | None = Field(None, gt=0, le=60, title="Renew and claim period; None: lease_s / 4")
    share_group: str = Field(
        "flexselect", pattern=r"^[A-Za-z0-9_-]{1,64}$", title="Unused (questions are claimed in Redis)"
    )
    status_interval_s: float = Field(5.0, gt=0, le=3600, title="Period of the retained cluster status")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.tick_s is not None and self.tick_s * 2 > self.lease_s:
            raise ValueError(f"tick_s={self.tick_s} must be at most half of lease_s={self.lease_s}")
        for stream, labels in self.pins.items():
            for key in labels:
                if not _label_ok(key):
                    raise ValueError(f"pins.{stream}: label {key!r} must match {LABEL}")
        return self

    @property
    def period_s(self) -> float:
        """How often leases are renewed and free streams claimed."""
        return self.tick_s if self.tick_s is not None else self.lease_s / 4

    def may_ingest(self, stream_id: str) -> bool:
        """Whether this agent's labels satisfy the stream's pin (streams without a pin go anywhere)."""
        wanted = self.pins.get(stream_id, {})
        return all(self.labels.get(k) == v for k, v in wanted.items())


def _label_ok(key: str) -> bool:
    return re.match(LABEL, key) is not None
