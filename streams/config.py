"""StreamConfig: how one source is sampled, chunked, buffered and kept alive."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.backoff import BackoffConfig, move_old_keys

DropPolicy = Literal["auto", "drop_oldest", "wait"]
Transport = Literal["tcp", "udp", "udp_multicast", "http", "https"]

STREAM_BACKOFF = BackoffConfig(initial_s=1.0, max_s=30.0, jitter=0.2)
OLD_BACKOFF_KEYS = {"backoff_base_s": "initial_s", "backoff_cap_s": "max_s", "backoff_jitter": "jitter"}


class StreamConfig(BaseModel):
    """Per-source settings. Pure data: the agent reads files and env, `streams` only validates.

    Times are in seconds. Defaults suit a 24/7 camera: TCP transport, one sampled frame per second,
    4 s chunks, reconnect forever with back-off from 1 s to 30 s.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Sampling and chunking
    sample_fps: float = Field(1.0, gt=0, le=240, description="Frames per second kept from the source.")
    keyframes_only: bool = Field(
        False, description="Decode only keyframes (cheap); sample_fps still caps the rate."
    )
    max_side: int | None = Field(
        None, ge=16, le=16384, description="Downscale so the longer side is at most this (aspect kept)."
    )
    chunk_seconds: float = Field(4.0, gt=0, le=3600, description="Span of media time in one chunk.")

    # Backpressure
    queue_size: int = Field(4, ge=1, le=4096, description="Chunks buffered per source, never more.")
    drop_policy: DropPolicy = Field(
        "auto",
        description="When the queue is full: drop the oldest chunk, or make the decoder wait. "
        "auto: drop for live and real-time-paced sources, wait for recordings.",
    )

    # Kind of source
    live: bool | None = Field(
        None, description="Force live (wall-clock times, reconnects) or recording; None: from the URI."
    )
    realtime: bool = Field(False, description="Pace a recording at real time, as if it were live.")

    # Connection
    transport: Transport = Field("tcp", description="RTSP lower transport.")
    open_timeout_s: float = Field(10.0, gt=0, le=600, description="Limit on connecting and probing.")
    read_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Socket I/O limit for network sources (FFmpeg `timeout`/`rw_timeout`).",
    )
    probe_seconds: float = Field(
        1.0, gt=0, le=60, description="Media analysed at open for network sources (FFmpeg `analyzeduration`)."
    )
    av_options: dict[str, str] = Field(
        default_factory=dict, description="Extra FFmpeg demuxer options; they override ours."
    )
    decode_threads: int = Field(1, ge=0, le=64, description="FFmpeg decoder threads; 0 lets FFmpeg choose.")

    # Reliability
    stall_seconds: float = Field(
        20.0, gt=0, le=3600, description="No decoded frame for this long: reconnect."
    )
    backoff: BackoffConfig = Field(
        default_factory=lambda: STREAM_BACKOFF,
        description="Reconnect delays (older flat keys: backoff_base_s, backoff_cap_s, backoff_jitter).",
    )
    max_retries: int | None = Field(
        None, ge=0, description="Failed attempts in a row before a live source FAILS; None: retry forever."
    )
    close_timeout_s: float = Field(
        2.0, gt=0, le=60, description="How long aclose() waits for the decoder thread."
    )

    @model_validator(mode="before")
    @classmethod
    def _old_backoff_keys(cls, data: Any) -> Any:
        return move_old_keys(data, OLD_BACKOFF_KEYS, STREAM_BACKOFF)

    def frames_per_chunk(self) -> int:
        """Frames a full chunk holds at the target rate (the last chunk of a recording may hold fewer)."""
        return max(1, round(self.chunk_seconds * self.sample_fps))
