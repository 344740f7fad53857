"""`flexselect-agent serve -c CONFIG`: run the agent until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cli.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    p = subparsers.add_parser("serve", help="watch the configured streams and answer questions over MQTT")
    p.add_argument("-c", "--config", type=Path, default=None, help="YAML config (default: embedded defaults)")
    p.add_argument("--validate-config", action="store_true", help="check the config and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate the configuration, then serve until a stop signal; exit 0 after a clean stop."""
    from agent.config import ConfigError
    from agent.runtime import load, serve_forever

    try:
        config = load(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.validate_config:
        print(
            f"configuration OK: {len(config.streams)} streams, model {config.model.name}, "
            f"memory {config.memory.backend}, mqtt {config.mqtt.host}:{config.mqtt.port}/{config.mqtt.prefix}"
        )
        return 0
    from agent.app import AgentApp
    from agent.logs import configure_logging

    configure_logging(config.logging.level, config.logging.format)
    app = AgentApp(config)
    from agent.memory.errors import TokenMemoryError
    from agent.mqtt.errors import MqttAgentError

    try:
        asyncio.run(serve_forever(app))
    except ConfigError as exc:  # found at start-up, e.g. a selector that does not load
        raise UsageError(str(exc)) from None
    except (MqttAgentError, TokenMemoryError) as exc:  # broker or memory refused us: one line, no traceback
        print(f"flexselect-agent serve: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
