"""Bounded, persistent visual-token memory per stream: in-process or Redis, one policy (docs/memory.md)."""

from __future__ import annotations

from common.lazy import lazy_exports

# Each public name and the module that defines it, imported on first use (common.lazy), so that importing
# a light submodule (a config, the errors) loads none of the heavy ones (torch, av, aiomqtt, redis).
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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
