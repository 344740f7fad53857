"""The memory's config models: forbidden extras, bounds, cross-field rules, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.memory import MemoryConfig, RedisConfig, RetentionConfig


def test_defaults_are_valid_and_local() -> None:
    config = MemoryConfig()
    assert (config.backend, config.retention.max_tokens_per_stream, config.snapshot_path) == (
        "local",
        32_768,
        None,
    )


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        MemoryConfig.model_validate({"retention": {"max_tokens": 5}})


@pytest.mark.parametrize(
    "fields",
    [
        {"max_tokens_per_stream": 0},
        {"bucket_seconds": 0},
        {"similarity_threshold": 1.0},
        {"recent_seconds": -1},
        {"max_chunk_tokens": 1 << 21},
        {"attention_norm": "softmax"},
    ],
)
def test_out_of_bounds_retention_knobs_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetentionConfig.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tls_ca_file": "ca.pem"}, "rediss://"),
        ({"url": "rediss://h:6380", "tls_cert_file": "c.pem"}, "together"),
        ({"retry_initial_s": 5.0, "retry_max_s": 1.0}, "retry_max_s"),
        ({"url": "http://h"}, "pattern"),
        ({"key_prefix": "has space"}, "pattern"),
    ],
)
def test_inconsistent_redis_settings_are_rejected(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RedisConfig.model_validate(fields)


def test_the_password_stays_secret() -> None:
    config = MemoryConfig(redis=RedisConfig(password="hunter2"))  # type: ignore[arg-type]
    assert "hunter2" not in repr(config) and "hunter2" not in config.model_dump_json()


def test_every_field_has_a_title() -> None:
    for model in (MemoryConfig, RetentionConfig, RedisConfig):
        assert all(field.title for field in model.model_fields.values()), model.__name__


def test_the_snapshot_path_is_a_path() -> None:
    assert MemoryConfig.model_validate(
        {"snapshot_path": "/var/lib/agent/m.safetensors"}
    ).snapshot_path == Path("/var/lib/agent/m.safetensors")
