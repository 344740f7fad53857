"""Bounded, persistent visual-token memory per stream: in-process or Redis, one policy (docs/memory.md)."""

from __future__ import annotations

from agent.memory.base import (
    AppendResult,
    AppendStatus,
    MemoryState,
    MemoryStats,
    RetainedTokens,
    StreamStats,
    TokenMemory,
)
from agent.memory.config import MemoryConfig, RedisConfig, RetentionConfig
from agent.memory.errors import (
    ConfigMismatchError,
    CorruptEntryError,
    FencedError,
    LayoutMismatchError,
    MemoryAuthError,
    MemoryClosedError,
    MemoryInputError,
    MemoryUnavailableError,
    TokenMemoryError,
)
from agent.memory.survival import retained_fraction

__all__ = [
    "AppendResult",
    "AppendStatus",
    "ConfigMismatchError",
    "CorruptEntryError",
    "FencedError",
    "LayoutMismatchError",
    "MemoryAuthError",
    "MemoryClosedError",
    "MemoryConfig",
    "MemoryInputError",
    "MemoryState",
    "MemoryStats",
    "MemoryUnavailableError",
    "RedisConfig",
    "RetainedTokens",
    "RetentionConfig",
    "StreamStats",
    "TokenMemory",
    "TokenMemoryError",
    "open_memory",
    "retained_fraction",
]


def open_memory(config: MemoryConfig) -> TokenMemory:
    """The backend `config.backend` names, unconnected: use `async with open_memory(cfg) as memory`."""
    if config.backend == "redis":
        from agent.memory.redis import RedisTokenMemory

        return RedisTokenMemory(config)
    from agent.memory.local import LocalTokenMemory

    return LocalTokenMemory(config)
