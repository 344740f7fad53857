"""Configuration of the token memory: budgets and retention knobs, the Redis link, the backend choice."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from common.backoff import BackoffConfig, move_old_keys

KiB = 1024
MiB = 1024 * KiB
OLD_BACKOFF_KEYS = {"retry_initial_s": "initial_s", "retry_max_s": "max_s"}
GiB = 1024 * MiB
MAX_CHUNK_TOKENS = 1 << 20  # a row index is five hex digits in Redis members


_SECRET_QUERY = re.compile(r"(?i)(?:^|[&;])(?:password|passwd|pwd|pass|token|auth|secret|key)=")


def check_redis_url(url: str) -> str:
    """Return `url` if it is a well-formed Redis URL with a host (or socket path) and no credentials.

    Raises:
        ValueError: malformed (bad host or port), no host, or a user name/password/secret inside it.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it raises ValueError for a bad port)
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if "@" in parts.netloc or _SECRET_QUERY.search(parts.query):
        raise ValueError(
            "credentials may not be part of the Redis URL; use memory.redis.username and "
            "memory.redis.password_file (or FLEXSELECT__MEMORY__REDIS__PASSWORD)"
        )
    if parts.scheme in ("redis", "rediss") and not parts.hostname:
        raise ValueError("the URL names no host, e.g. redis://127.0.0.1:6379/0")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("the URL names no socket path, e.g. unix:///run/redis/redis.sock")
    return url


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetentionConfig(_Model):
    """What the memory keeps: hard budgets, time-bucket floors, the dense recent window, score weights."""

    max_tokens_per_stream: int = Field(32_768, ge=1, le=1 << 31, title="Max retained tokens per stream")
    max_bytes_per_stream: int = Field(
        512 * MiB, ge=1 * KiB, le=1 << 40, title="Max retained payload bytes per stream"
    )
    max_tokens_total: int = Field(262_144, ge=1, le=1 << 34, title="Max retained tokens over all streams")
    max_bytes_total: int = Field(4 * GiB, ge=1 * KiB, le=1 << 44, title="Max retained payload bytes in total")
    bucket_seconds: float = Field(60.0, gt=0, le=86_400, title="Length of a retention time bucket (s)")
    floor_tokens_per_bucket: int = Field(
        16, ge=0, le=1 << 20, title="Tokens each time bucket keeps before other buckets' floors give way"
    )
    recent_seconds: float = Field(
        10.0, ge=0, le=86_400, title="Window behind a stream's newest frame that is kept dense"
    )
    attention_weight: float = Field(1.0, ge=0, le=1e3, title="Weight of the normalised ingest attention")
    redundancy_weight: float = Field(1.0, ge=0, le=1e3, title="Weight of the redundancy penalty")
    similarity_threshold: float = Field(
        0.9, ge=-1.0, lt=1.0, title="Cosine similarity below which a patch counts as new (redundancy 0)"
    )
    attention_norm: Literal["mean", "none"] = Field(
        "mean", title="Per-chunk attention normalisation: divide by the chunk mean, or use as given"
    )
    max_chunk_tokens: int = Field(
        65_536, ge=1, le=MAX_CHUNK_TOKENS, title="Largest chunk an append accepts (tokens)"
    )
    max_chunk_bytes: int = Field(
        256 * MiB, ge=1 * KiB, le=400 * MiB, title="Largest chunk an append accepts (payload bytes)"
    )

    def structure(self) -> dict[str, float]:
        """The knobs that shape the stored indexes; every agent sharing a Redis prefix must agree on them."""
        return {
            "bucket_seconds": self.bucket_seconds,
            "floor_tokens_per_bucket": self.floor_tokens_per_bucket,
            "recent_seconds": self.recent_seconds,
        }


class RedisConfig(_Model):
    """How to reach Redis and how to behave while it is away (values already resolved from env/secrets)."""

    url: str = Field(
        "redis://127.0.0.1:6379/0",
        pattern=r"^(redis|rediss|unix)://",
        title="Redis URL (redis://, rediss:// for TLS, unix://)",
    )
    username: str | None = Field(None, max_length=256, title="ACL user name")
    password: SecretStr | None = Field(None, title="Password (resolved by the agent's config layer)")
    tls_ca_file: Path | None = Field(None, title="CA bundle that signs the server certificate")
    tls_cert_file: Path | None = Field(None, title="Client certificate for mutual TLS")
    tls_key_file: Path | None = Field(None, title="Client key for mutual TLS")
    tls_verify: bool = Field(True, title="Verify the server certificate and host name")
    key_prefix: str = Field(
        "fsa:mem", pattern=r"^[A-Za-z0-9._:-]{1,64}$", title="Prefix of every key this memory owns"
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=120, title="TCP/TLS connect timeout (s)")
    op_timeout_s: float = Field(30.0, gt=0, le=600, title="Timeout of one Redis call (s)")
    backoff: BackoffConfig = Field(
        default_factory=BackoffConfig, title="Reconnect back-off (older keys: retry_initial_s, retry_max_s)"
    )
    max_pending_chunks: int = Field(
        256, ge=0, le=1 << 20, title="Chunks buffered while Redis is away (oldest dropped beyond)"
    )
    max_pending_bytes: int = Field(
        256 * MiB, ge=0, le=1 << 40, title="Payload bytes buffered while Redis is away (oldest dropped)"
    )
    read_batch_chunks: int = Field(64, ge=1, le=4096, title="Chunks fetched per Redis call when reading")
    max_connections: int = Field(
        32,
        ge=2,
        le=10_000,
        title="Redis connections at most; a call waits for a free one (reads may hold at most half)",
    )
    cluster: bool = Field(False, title="The URL names a Redis Cluster node (keys hash-tagged per stream)")
    sentinels: list[str] = Field(
        default_factory=list,
        max_length=32,
        title="Sentinels (host:port) that name the master; the URL then gives only db, scheme, credentials",
    )
    sentinel_master: str = Field(
        "mymaster", pattern=r"^[A-Za-z0-9._-]{1,64}$", title="The master's name at the Sentinels"
    )

    @field_validator("url")
    @classmethod
    def _usable_url(cls, url: str) -> str:
        return check_redis_url(url)

    @model_validator(mode="after")
    def _tls_consistent(self) -> RedisConfig:
        tls_files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(f is not None for f in tls_files) and not self.url.startswith("rediss://"):
            raise ValueError(f"TLS files are set but url={self.url!r} is not rediss://; use rediss://")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together; set both or neither")
        if self.sentinels and self.cluster:
            raise ValueError("sentinels and cluster exclude each other (a Redis Cluster fails over itself)")
        for address in self.sentinels:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"sentinel {address!r} is not host:port")
        return self

    @model_validator(mode="before")
    @classmethod
    def _old_backoff_keys(cls, data: Any) -> Any:
        return move_old_keys(data, OLD_BACKOFF_KEYS, BackoffConfig())


class MemoryConfig(_Model):
    """The memory slice of the agent's config: which backend, what it retains, where it persists."""

    backend: Literal["local", "redis"] = Field("local", title="Storage backend")
    retention: RetentionConfig = Field(default_factory=RetentionConfig, title="Budgets and retention")
    redis: RedisConfig = Field(default_factory=RedisConfig, title="Redis backend settings")
    snapshot_path: Path | None = Field(
        None, title="Local backend: safetensors file written at close and loaded at connect"
    )
    compact_fraction: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        title="Share of a chunk's stored rows evicted before the chunk is rewritten without them",
    )


class PicturesConfig(BaseModel):
    """How evidence pictures are made and kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, title="Keep a JPEG thumbnail of every retained frame")
    max_side: int = Field(320, ge=16, le=4096, title="Longest side of a thumbnail (px); smaller frames stay")
    quality: int = Field(80, ge=10, le=95, title="JPEG quality")
    max_per_stream: int = Field(20_000, ge=1, le=10_000_000, title="Pictures kept per stream at most")
    sweep_every_chunks: int = Field(
        4, ge=1, le=10_000, title="Chunks between sweeps that drop pictures whose tokens were evicted"
    )
    mqtt_snapshots: bool = Field(
        False, title="Also publish the JPEG of each answer's and watch event's best evidence over MQTT"
    )
