"""StreamConfig validates itself and rejects what it does not know."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams import StreamConfig


def test_defaults_suit_a_camera() -> None:
    config = StreamConfig()
    assert (config.sample_fps, config.chunk_seconds, config.transport) == (1.0, 4.0, "tcp")
    assert config.max_retries is None
    assert config.frames_per_chunk() == 4


@pytest.mark.parametrize(
    "fields",
    [{"sample_fps": 0}, {"chunk_seconds": -1}, {"queue_size": 0}, {"backoff_jitter": 1.5}, {"max_side": 4}],
)
def test_out_of_range_values_are_rejected(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        StreamConfig(**fields)


def test_backoff_cap_below_base_is_rejected_with_both_values() -> None:
    with pytest.raises(ValidationError, match=r"backoff_cap_s \(0.5\) must be >= backoff_base_s \(2.0\)"):
        StreamConfig(backoff_base_s=2.0, backoff_cap_s=0.5)


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        StreamConfig(fps=5)  # type: ignore[call-arg]
