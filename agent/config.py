"""The agent's configuration: one YAML file validated by pydantic, environment overrides, secrets resolved.

Layers, later wins: the embedded defaults, the YAML file, then `FLEXSELECT__SECTION__KEY=value` variables
(values parsed as YAML scalars; list items by index, e.g. `FLEXSELECT__STREAMS__0__URI`). Secrets never
live in config files: `mqtt.password`, `memory.redis.password`, `http.token` and a stream's `uri` when it
carries credentials come from `<key>_file` (a secret file) or from the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.cluster.config import ClusterConfig
from agent.config_checks import check_stream_uri, is_loopback, literal_uri_credentials
from agent.homeassistant import HomeAssistantSection
from agent.memory.config import MemoryConfig, PicturesConfig
from agent.mqtt.config import MqttConfig
from agent.mqtt.messages import WatchSpec
from agent.watches import WatchLimits
from streams.config import StreamConfig
from streams.uri import mask_uri

ENV_PREFIX = "FLEXSELECT__"
SECRET_KEYS: tuple[tuple[str, ...], ...] = (
    ("mqtt", "password"),
    ("memory", "redis", "password"),
    ("http", "token"),
)
DEFAULT_DESCRIPTION_PROMPT = "describe what happens in the video"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the key path and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(_Section):
    """Which video LLM answers and how FlexSelect selects its evidence."""

    name: str = Field("toy", min_length=1, title="Hub id, local checkpoint directory, or 'toy'")
    device: str | None = Field(None, title="cuda, cuda:N or cpu; None picks cuda when available")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", title="Weights dtype")
    scorer: Literal["reference", "lite", "none"] = Field(
        "reference", title="Token scorer: FlexSelect's reference layer, the FlexSelect-Lite selector, or none"
    )
    selector: str | None = Field(
        None,
        min_length=1,
        title="FlexSelect-Lite selector directory, or 'toy' (the shipped one); None: 'toy' for the toy model",
        validate_default=True,
    )
    layer: int | None = Field(None, ge=0, title="Reference layer; None: the model's default")
    aggregation: Literal["max", "mean"] | None = Field(
        None, title="Reduction over heads and question tokens; None: the model's default"
    )
    budget: int | None = Field(None, ge=1, title="Visual tokens kept per answer; None: 32 frames' worth")
    max_frames_per_group: int = Field(64, ge=1, le=4096, title="Frames scored together")
    max_new_tokens: int = Field(32, ge=1, le=4096, title="Longest generated answer (tokens)")
    selector_cache_max_bytes: int | None = Field(
        None,
        ge=1,
        le=1 << 44,
        title="Device bytes of selector state each stream's cache may hold (scorer lite); None: no limit",
    )
    decode_graphs: bool = Field(
        False,
        title="Decode answers by replaying CUDA graphs over a static KV cache (a CUDA device only)",
        validate_default=True,
    )

    @field_validator("selector")
    @classmethod
    def _check_selector(cls, selector: str | None, info: ValidationInfo) -> str | None:
        scorer, name = info.data.get("scorer"), info.data.get("name")
        if selector is not None and scorer != "lite":
            raise ValueError(
                f"a selector is only used with model.scorer 'lite' (model.scorer is {scorer!r}); "
                "set model.scorer: lite or remove model.selector"
            )
        if scorer == "lite" and selector is None and name != "toy":
            raise ValueError(
                f"model.scorer 'lite' with model {name!r} needs a selector trained for it (a directory "
                "written by `flexselect-agent selector train`); only the toy model ships one"
            )
        return selector

    @field_validator("selector_cache_max_bytes")
    @classmethod
    def _check_cache_bytes(cls, max_bytes: int | None, info: ValidationInfo) -> int | None:
        scorer = info.data.get("scorer")
        if max_bytes is not None and scorer != "lite":
            raise ValueError(
                f"the selector cache is only used with model.scorer 'lite' (model.scorer is {scorer!r}); "
                "set model.scorer: lite or remove model.selector_cache_max_bytes"
            )
        return max_bytes

    @field_validator("decode_graphs")
    @classmethod
    def _check_decode_graphs(cls, graphs: bool, info: ValidationInfo) -> bool:
        device = info.data.get("device")
        if graphs and device is not None and not device.startswith("cuda"):
            raise ValueError(
                f"model.decode_graphs needs a CUDA device (model.device is {device!r}); "
                "set model.device: cuda or model.decode_graphs: false"
            )
        return graphs


class StreamSection(_Section):
    """One camera or recording."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", title="Stream id (topic-safe)")
    uri: str = Field(min_length=1, title="rtsp(s)://, http(s)://, a file path or a V4L2 device")
    source: StreamConfig = Field(default_factory=StreamConfig, title="Sampling, chunking, reconnects")
    time_origin: float | None = Field(
        None, title="Unix time that media time 0 of a recording maps to; None: when ingest starts"
    )
    restart: Literal["resume", "replace"] = Field(
        "resume",
        title="A recording at a restart: resume after what memory holds, or replace (delete, ingest again)",
    )

    @field_validator("uri")
    @classmethod
    def _openable(cls, uri: str) -> str:
        return check_stream_uri(uri)


class IngestSection(_Section):
    """How chunks become memory."""

    standing_prompts: list[str] = Field(
        default_factory=lambda: [DEFAULT_DESCRIPTION_PROMPT],
        title="Prompts whose attention scores tokens at ingest (watch questions are added)",
    )
    max_batch_chunks: int = Field(
        16, ge=1, le=256, title="Most waiting chunks (any streams) run as one vision forward and scoring pass"
    )
    watch_window_s: float = Field(30.0, gt=0, le=86_400, title="Recent seconds a watch question looks at")
    queue_chunks: int = Field(16, ge=1, le=4096, title="Chunks waiting for the encoder, all streams")


class QuestionsSection(_Section):
    """Limits on questions."""

    max_question_chars: int = Field(2000, ge=1, le=100_000, title="Longest accepted question")
    queue_size: int = Field(32, ge=1, le=10_000, title="Questions waiting; more are refused (queue_full)")
    max_consecutive: int = Field(4, ge=1, le=1000, title="Questions run before ingest gets a batch")
    timeout_s: float = Field(120.0, gt=0, le=3600, title="Longest a question may wait and run")


class HttpSection(_Section):
    """The HTTP API, web console, Prometheus metrics and health endpoints (docs/web.md)."""

    enabled: bool = True
    host: str = Field(
        "127.0.0.1", min_length=1, title="Address to listen on; beyond loopback it needs http.token"
    )
    port: int = Field(9410, ge=0, le=65535, title="0 picks a free port")
    token: SecretStr | None = Field(
        None, title="Bearer token the API, console data and metrics require (token_file or the environment)"
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        title="Base URL clients reach the agent at, for evidence picture links; None: http://host:port",
    )
    console: bool = Field(True, title="Serve the web console at /")

    @model_validator(mode="after")
    def _no_open_bind(self) -> Self:
        if self.enabled and self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"http.host {self.host!r} is reachable from other machines and no token is set; bind "
                f"127.0.0.1, or set http.token_file (or {ENV_PREFIX}HTTP__TOKEN)"
            )
        return self


class LoggingSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class AgentConfig(_Section):
    """The whole agent; every section is optional and has embedded defaults."""

    model: ModelSection = Field(default_factory=ModelSection)
    streams: list[StreamSection] = Field(default_factory=list)
    ingest: IngestSection = Field(default_factory=IngestSection)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    questions: QuestionsSection = Field(default_factory=QuestionsSection)
    watches: list[WatchSpec] = Field(default_factory=list)
    watch_limits: WatchLimits = Field(default_factory=WatchLimits)
    http: HttpSection = Field(default_factory=HttpSection)
    pictures: PicturesConfig = Field(default_factory=PicturesConfig)
    homeassistant: HomeAssistantSection = Field(default_factory=HomeAssistantSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, title="Sharing with other agents (off)")
    shutdown_timeout_s: float = Field(10.0, gt=0, le=600, title="SIGTERM: longest wait for questions")

    @model_validator(mode="after")
    def _check_ids(self) -> Self:
        ids = [s.id for s in self.streams]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"stream ids must be unique; repeated: {', '.join(duplicates)}")
        if self.cluster.enabled and self.memory.backend != "redis":
            raise ValueError("cluster.enabled needs memory.backend: redis (the agents share the memory)")
        for watch in self.watches:
            unknown = sorted(set(watch.streams or []) - set(ids))
            if unknown:
                raise ValueError(f"watch {watch.id!r} names unknown streams: {', '.join(unknown)}")
            if watch.min_interval_s < self.watch_limits.min_interval_s:
                raise ValueError(
                    f"watch {watch.id!r}: min_interval_s {watch.min_interval_s:g} is below "
                    f"watch_limits.min_interval_s {self.watch_limits.min_interval_s:g}"
                )
        if len(self.watches) > self.watch_limits.max_watches:
            raise ValueError(
                f"{len(self.watches)} watches are configured; watch_limits.max_watches is "
                f"{self.watch_limits.max_watches}"
            )
        return self


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read, override and validate the configuration; raises ConfigError with the key path on failure."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    _reject_literal_secrets(data)
    problems = literal_uri_credentials(data)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    _apply_env_overrides(data, env)
    _resolve_secrets(data, env)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: `key.path: message (got value)`."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"{where}: {err['msg']}{_shown_input(err)}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _shown_input(err: Any) -> str:
    """The offending value for an error line, never a secret or a whole section."""
    value = err.get("input")
    if err["type"] == "missing" or isinstance(value, dict | list):
        return ""
    if any("password" in str(part) or "token" in str(part) for part in err["loc"]):
        return " (got ***)"
    return f" (got {mask_uri(value) if isinstance(value, str) else value!r})"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top level, got {type(data).__name__}"
        )
    return data


def _reject_literal_secrets(data: dict[str, Any]) -> None:
    for path in SECRET_KEYS:
        node: Any = data
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and node.get(path[-1]) is not None:
            dotted = ".".join(path)
            raise ConfigError(
                f"{dotted}: secrets may not be written in config files; use {dotted}_file "
                f"or the {ENV_PREFIX}{'__'.join(p.upper() for p in path)} environment variable"
            )


def _apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(env[name])
        except yaml.YAMLError:
            value = env[name]
        if parts[-1] in ("password", "uri", "token") and isinstance(value, int | float):
            value = env[name]  # secrets and URIs are strings even when they look like numbers
        _set_path(data, parts, value, name)


def _set_path(data: dict[str, Any], parts: list[str], value: Any, source: str) -> None:
    node: Any = data
    for i, key in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            index = _index(key, source)
            while len(node) <= index:
                node.append({})
            node = node[index]
            continue
        if key not in node or not isinstance(node[key], dict | list):
            node[key] = [] if re.fullmatch(r"\d+", nxt) else {}
        node = node[key]
    last = parts[-1]
    if isinstance(node, list):
        index = _index(last, source)
        while len(node) <= index:
            node.append(None)
        node[index] = value
    else:
        node[last] = value


def _index(key: str, source: str) -> int:
    if not re.fullmatch(r"\d+", key):
        raise ConfigError(f"{source}: {key!r} is not a list index")
    return int(key)


def _resolve_secrets(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """Replace every `<key>_file` of a secret (and of stream URIs) by the file's content."""
    for path in SECRET_KEYS:
        node: Any = data
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                node = None
                break
            node = node[key]
        if isinstance(node, dict):
            _read_secret_file(node, path[-1], ".".join(path))
    for i, stream in enumerate(data.get("streams") or []):
        if isinstance(stream, dict):
            _read_secret_file(stream, "uri", f"streams.{i}.uri")


def _read_secret_file(node: dict[str, Any], key: str, dotted: str) -> None:
    file_key = f"{key}_file"
    if file_key not in node:
        return
    path = Path(str(node.pop(file_key)))
    if node.get(key) is not None:
        raise ConfigError(f"{dotted}: give either {key} (from the environment) or {file_key}, not both")
    try:
        node[key] = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{dotted}_file: cannot read secret file {path}: {exc.strerror}") from None
