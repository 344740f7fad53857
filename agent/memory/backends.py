"""Opening the memory backend a config names: in-process or Redis."""

from __future__ import annotations

from agent.memory.base import TokenMemory
from agent.memory.config import MemoryConfig
from agent.memory.local import LocalTokenMemory
from agent.memory.redis import RedisTokenMemory


def open_memory(config: MemoryConfig) -> TokenMemory:
    """The backend `config.backend` names, unconnected: use `async with open_memory(cfg) as memory`."""
    if config.backend == "redis":
        return RedisTokenMemory(config)
    return LocalTokenMemory(config)
