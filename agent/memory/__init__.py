"""Bounded, persistent visual-token memory per stream: in-process or Redis, one policy (docs/memory.md)."""

from __future__ import annotations

import importlib

# Each public name and the module that defines it; loaded on first use so that importing a light
# submodule (a config, the errors) does not load the heavy ones (torch, av, aiomqtt, redis).
_EXPORTS = {
    "AppendResult": "agent.memory.base",
    "AppendStatus": "agent.memory.base",
    "ConfigMismatchError": "agent.memory.errors",
    "CorruptEntryError": "agent.memory.errors",
    "FencedError": "agent.memory.errors",
    "LayoutMismatchError": "agent.memory.errors",
    "MemoryAuthError": "agent.memory.errors",
    "MemoryClosedError": "agent.memory.errors",
    "MemoryConfig": "agent.memory.config",
    "MemoryInputError": "agent.memory.errors",
    "MemoryState": "agent.memory.base",
    "MemoryStats": "agent.memory.base",
    "MemoryUnavailableError": "agent.memory.errors",
    "open_memory": "agent.memory.backends",
    "RedisConfig": "agent.memory.config",
    "retained_fraction": "agent.memory.survival",
    "RetainedTokens": "agent.memory.base",
    "RetentionConfig": "agent.memory.config",
    "StreamMemoryStats": "agent.memory.base",
    "TokenMemory": "agent.memory.base",
    "TokenMemoryError": "agent.memory.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    """A re-exported name, imported from its defining module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

