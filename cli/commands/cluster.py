"""`flexselect-agent cluster status -c CONFIG`: who owns which stream, lease ages, capacity."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from cli.errors import UsageError

if TYPE_CHECKING:
    from agent.cluster.status import ClusterStatus
    from agent.config import AgentConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `cluster` subcommand."""
    p = subparsers.add_parser("cluster", help="inspect a cluster of agents that share a Redis memory")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    status = verbs.add_parser("status", help="agents, their streams and leases, read from Redis")
    status.add_argument("-c", "--config", type=Path, default=None, help="an agent's YAML config")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    """Print the cluster status read from the config's Redis; exit 1 if a stream has no owner."""
    from agent.config import ConfigError
    from agent.runtime import load

    try:
        config = load(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if config.memory.backend != "redis":
        raise UsageError("a cluster shares a Redis memory; this config has memory.backend local")
    status = asyncio.run(_read(config))
    print(status.model_dump_json(indent=2) if args.json else status.table())
    return 1 if status.unowned else 0


async def _read(config: AgentConfig) -> ClusterStatus:
    """The status, through a client of its own (a plain or a cluster client, as the memory uses)."""
    import redis.asyncio as aioredis

    from agent.cluster.status import read_status
    from agent.memory.redis import client_kwargs
    from agent.memory.redis_scripts import KeyLayout

    link = config.memory.redis
    factory = aioredis.RedisCluster if link.cluster else aioredis.Redis
    client = factory.from_url(link.url, **client_kwargs(link))
    try:
        return await read_status(client, KeyLayout(link.key_prefix, cluster=link.cluster), config.cluster)
    except Exception as exc:
        raise UsageError(f"cannot read the cluster from {link.url.split('@')[-1]}: {exc}") from None
    finally:
        await client.aclose()
