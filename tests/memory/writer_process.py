"""A writer in its own OS process: appends chunks to a shared Redis memory (cross-process atomicity tests).

Usage: python -m tests.memory.writer_process URL PREFIX RETENTION_JSON COUNT SEED
Prints "ready" once connected and "done" at the end, one line each.
"""

from __future__ import annotations

import asyncio
import random
import sys

import torch

from agent.memory import MemoryConfig, RedisConfig, RetentionConfig, open_memory
from tests.memory.memory_helpers import make_tokens

STREAMS = ("a", "b", "c")


async def write(url: str, prefix: str, retention: RetentionConfig, count: int, seed: int) -> None:
    rng = random.Random(seed)
    config = MemoryConfig(backend="redis", retention=retention, redis=RedisConfig(url=url, key_prefix=prefix))
    async with open_memory(config) as memory:
        print("ready", flush=True)
        for i in range(count):
            tokens = make_tokens([i * 16 + seed], rows=rng.randint(1, 3), seed=seed)
            result = await memory.append(rng.choice(STREAMS), tokens, torch.rand(len(tokens)))
            if (
                result.stream_tokens > retention.max_tokens_per_stream
                or result.total_tokens > retention.max_tokens_total
            ):
                print(f"over budget: {result}", flush=True)
                sys.exit(3)
        print("done", flush=True)


if __name__ == "__main__":
    url, prefix, retention_json, count, seed = sys.argv[1:6]
    asyncio.run(
        write(url, prefix, RetentionConfig.model_validate_json(retention_json), int(count), int(seed))
    )
