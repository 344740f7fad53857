"""The HTTP API's own response models (requests and answers reuse the MQTT messages)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from agent.mqtt.messages import WatchEvent


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)


class PictureRef(_Out):
    """One evidence picture: its frame's time and where to fetch the JPEG."""

    time: datetime
    url: str


class StreamView(_Out):
    """A stream as the console shows it: source state, counters, memory fill, latest picture."""

    stream: str
    configured: bool = Field(title="In this agent's config (else only remembered by the memory)")
    state: str = Field(title="connecting, streaming, stalled, backing_off, ended, failed or remembered")
    online: bool
    fps: float = Field(ge=0, title="Sampled frames per second, recent")
    frames: int = Field(ge=0)
    chunks: int = Field(ge=0)
    drops: int = Field(ge=0)
    reconnects: int = Field(ge=0)
    stalls: int = Field(ge=0)
    ingest_errors: int = Field(ge=0)
    last_error: str | None
    memory_tokens: int = Field(ge=0)
    memory_bytes: int = Field(ge=0)
    memory_max_tokens: int = Field(ge=1, title="The per-stream token budget")
    memory_fill: float = Field(ge=0, le=1, title="memory_tokens / memory_max_tokens")
    first_time: datetime | None = Field(title="Oldest retained video")
    last_time: datetime | None = Field(title="Newest retained video")
    pictures: int = Field(ge=0, title="Evidence pictures kept")
    latest_picture: PictureRef | None


class StreamList(_Out):
    streams: list[StreamView]


class PictureList(_Out):
    """A stream's kept pictures in a window, in time order (thinned evenly to the asked limit)."""

    stream: str
    total: int = Field(ge=0, title="Pictures in the window before thinning")
    pictures: list[PictureRef]


class EventList(_Out):
    """Recent watch events, newest first."""

    events: list[WatchEvent]


class Health(_Out):
    status: str
    memory: bool | None = None
    mqtt: bool | None = None
    model: bool | None = None
