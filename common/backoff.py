"""Reconnect back-off, one for every link (camera, broker, Redis): its settings and its delays.

Delays grow from `initial_s` by `factor` per failure in a row up to `max_s`, each varied by up to
+-`jitter` of itself (so clients that failed together spread out) and never above `max_s`. Settings written
under older key names are read by `from_old_keys`, which names those keys in its errors.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

OLD_NAMES = {"base_s": "initial_s", "cap_s": "max_s"}


class BackoffConfig(BaseModel):
    """Reconnect delays: initial_s * factor**(failures - 1), at most max_s, each +- jitter of itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_s: float = Field(0.5, gt=0, le=3600, title="First reconnect delay (s)")
    max_s: float = Field(30.0, gt=0, le=86400, title="Longest reconnect delay (s)")
    factor: float = Field(2.0, ge=1, le=100, title="Growth of the delay per failure in a row")
    jitter: float = Field(0.2, ge=0, le=1, title="Each delay varies by up to this fraction of itself")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        # The MQTT link's back-off was written {base_s, cap_s, jitter}; those names still read.
        if not isinstance(data, Mapping) or not any(old in data for old in OLD_NAMES):
            return data
        if any(new in data for new in OLD_NAMES.values()):
            raise ValueError("base_s and cap_s are older names of initial_s and max_s; use one name each")
        rest = {key: value for key, value in data.items() if key not in OLD_NAMES}
        return {**from_old_keys(data, OLD_NAMES, cls()), **rest}

    @model_validator(mode="after")
    def _max_above_initial(self) -> Self:
        if self.max_s < self.initial_s:
            raise ValueError(f"backoff max_s ({self.max_s}) must be >= initial_s ({self.initial_s})")
        return self


def from_old_keys(
    values: Mapping[str, Any], renames: Mapping[str, str], default: BackoffConfig
) -> dict[str, Any]:
    """The back-off fields given under older names (`renames`: old name -> field), over `default`.

    Raises:
        ValueError: the longest delay is below the first, naming the old keys the user wrote.
    """
    given = {field: values[old] for old, field in renames.items() if old in values}
    fields = {**default.model_dump(), **given}
    longest, first = fields["max_s"], fields["initial_s"]
    if all(isinstance(v, int | float) for v in (longest, first)) and longest < first:
        old = {field: name for name, field in renames.items()}
        raise ValueError(f"{old['max_s']} ({longest}) must be >= {old['initial_s']} ({first})")
    return fields


def move_old_keys(
    data: Any, renames: Mapping[str, str], default: BackoffConfig, *, section: str = "backoff"
) -> Any:
    """A config's raw input with back-off keys of an older flat form moved into its `section`."""
    if not isinstance(data, Mapping) or not any(old in data for old in renames):
        return data
    if section in data:
        given = ", ".join(old for old in renames if old in data)
        raise ValueError(f"{given} and {section} both set the back-off; keep {section} only")
    rest = {key: value for key, value in data.items() if key not in renames}
    return {**rest, section: from_old_keys(data, renames, default)}


class Backoff:
    """The delays of one link's reconnect attempts; `failures` counts failures in a row.

    `next_delay()` records a failure and says how long to wait; `reset()` after a success.
    """

    def __init__(self, config: BackoffConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt, seconds."""
        self.failures += 1
        config = self.config
        # factor**exponent overflows float past ~1000 failures in a row; max_s is reached long before.
        exponent = min(self.failures - 1, 62)
        delay = min(config.max_s, config.initial_s * config.factor**exponent)
        delay *= 1.0 + config.jitter * self._rng.uniform(-1.0, 1.0)
        return min(config.max_s, max(0.0, delay))

    def reset(self) -> None:
        """A session succeeded: the next failure starts again from `initial_s`."""
        self.failures = 0
