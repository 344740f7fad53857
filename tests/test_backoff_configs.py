"""Every link (camera, broker, Redis) uses the one back-off shape and still reads its older keys."""

from __future__ import annotations

from agent.memory.config import RedisConfig
from agent.mqtt.config import MqttConfig
from common.backoff import BackoffConfig
from streams.config import StreamConfig


def test_every_link_reads_its_older_back_off_keys_into_the_one_shape() -> None:
    stream = StreamConfig(backoff_base_s=0.2, backoff_cap_s=0.5, backoff_jitter=0.0)
    mqtt = MqttConfig(backoff={"base_s": 0.05, "cap_s": 0.2, "jitter": 0.1})
    redis = RedisConfig(retry_initial_s=0.05, retry_max_s=0.2)
    assert stream.backoff == BackoffConfig(initial_s=0.2, max_s=0.5, factor=2.0, jitter=0.0)
    assert mqtt.backoff == BackoffConfig(initial_s=0.05, max_s=0.2, factor=2.0, jitter=0.1)
    assert redis.backoff == BackoffConfig(initial_s=0.05, max_s=0.2, factor=2.0, jitter=0.2)


def test_each_link_keeps_its_default_delays() -> None:
    assert StreamConfig().backoff == BackoffConfig(initial_s=1.0, max_s=30.0, jitter=0.2)
    assert MqttConfig().backoff == BackoffConfig(initial_s=0.5, max_s=30.0, jitter=0.2)
    assert RedisConfig().backoff == BackoffConfig(initial_s=0.5, max_s=30.0, jitter=0.2)
