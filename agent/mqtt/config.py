"""Configuration of the MQTT link: broker address, identity, TLS, timeouts, back-off and queue bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agent.mqtt.errors import TopicError
from agent.mqtt.topics import DEFAULT_PREFIX, Topics, check_prefix
from common.backoff import BackoffConfig

Protocol = Literal["5", "3.1.1", "auto"]
DropPolicy = Literal["drop_oldest", "drop_newest"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Model):
    """TLS towards the broker: the CA to trust and an optional client certificate (paths already resolved)."""

    ca_file: Path | None = Field(None, title="CA bundle (PEM) that signed the broker; None: system CAs")
    cert_file: Path | None = Field(None, title="Client certificate (PEM), for brokers that require one")
    key_file: Path | None = Field(None, title="Client private key (PEM); None: the key is in cert_file")
    insecure: bool = Field(False, title="Skip the broker hostname check (the chain is still verified)")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("tls.key_file is set without tls.cert_file; set both or neither")
        return self


class MqttConfig(_Model):
    """How the agent reaches its broker; secrets arrive resolved (the config layer reads env and files)."""

    host: str = Field("127.0.0.1", min_length=1, max_length=253, title="Broker host name or IP address")
    port: int = Field(1883, ge=1, le=65535, title="Broker TCP port (8883 is usual for TLS)")
    prefix: str = Field(DEFAULT_PREFIX, min_length=1, max_length=200, title="Topic prefix of every topic")
    client_id: str = Field(
        "flexselect-agent",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        title="MQTT client id; unique per agent instance",
    )
    protocol: Protocol = Field("auto", title="MQTT version: 5, 3.1.1, or auto (5, falling back to 3.1.1)")
    username: str | None = Field(None, min_length=1, max_length=256, title="Broker username")
    password: SecretStr | None = Field(None, title="Broker password (needs a username)")
    tls: TlsConfig | None = Field(None, title="TLS settings; None: plain TCP")
    keepalive_s: int = Field(30, ge=5, le=3600, title="Keep-alive interval (s)")
    connect_timeout_s: float = Field(10.0, gt=0, le=300, title="Wait for the broker's CONNACK (s)")
    publish_timeout_s: float = Field(10.0, gt=0, le=300, title="Wait for a publish/subscribe ack (s)")
    backoff: BackoffConfig = Field(
        default_factory=BackoffConfig, title="Reconnect back-off (older base_s, cap_s: initial_s, max_s)"
    )
    max_queued_incoming: int = Field(
        4096, ge=1, le=100_000, title="Received messages held for the consumer before the drop policy acts"
    )
    incoming_drop_policy: DropPolicy = Field(
        "drop_oldest", title="When the incoming queue is full: drop its oldest message or the new one"
    )
    max_queued_outgoing: int = Field(
        256, ge=0, le=100_000, title="Non-retained messages kept while disconnected (oldest dropped)"
    )
    max_retained_topics: int = Field(
        4096, ge=1, le=1_000_000, title="Retained topics remembered for re-publishing after a reconnect"
    )

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        try:
            return check_prefix(value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _password_needs_username(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password is set without username; set both or neither")
        return self

    @property
    def topics(self) -> Topics:
        """The topic tree under this config's prefix."""
        return Topics(self.prefix)
