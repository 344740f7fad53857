"""The `flexselect-agent` command line: one subcommand module per job under `agent.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMAND_MODULES = (
    "agent.commands.ask",
    "agent.commands.answer",
    "agent.commands.synth",
    "agent.commands.serve",
    "agent.commands.demo",
    "agent.commands.toy",
    "agent.commands.calibrate",
    "agent.commands.bench",
    "agent.commands.eval",
    "agent.commands.selector",
    "agent.commands.cluster",
)


class UsageError(Exception):
    """A bad command-line input: reported as one line on stderr with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="flexselect-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def quiet_libraries() -> None:
    """Keep library progress bars and advisory warnings out of command output (errors still show)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the chosen subcommand and return its exit code."""
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"flexselect-agent {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
