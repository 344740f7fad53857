"""The `flexselect-agent` command line: the parser over every subcommand in `cli.commands`, and `main`.

This package is the composition root: service commands (serve, ask, cluster, demo) call `agent`, lab
commands (toy, selector, bench, calibrate-layer, eval) call `lab`, and `answer` and `synth` call
`flexselect` and `streams` directly. Command modules import their heavy stacks (torch, the models, the
MQTT client, the lab) inside the function that runs the command, so `--help` and the light commands start
in a fraction of a second instead of the seconds torch and transformers take to import.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli.commands import answer, ask, bench, calibrate, cluster, demo, selector, serve, synth, toy
from cli.commands import eval as evaluate
from cli.errors import UsageError

# Each module defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMANDS = (ask, answer, synth, serve, demo, toy, calibrate, bench, evaluate, selector, cluster)
DESCRIPTION = "FlexSelect Agent: the video question-answering service, and the lab that trains and tests it."


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="flexselect-agent", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def quiet_libraries() -> None:
    """Keep library progress bars and advisory warnings out of command output (errors still show)."""
    from transformers.utils import logging as hf_logging  # deferred: a second to import, `--help` skips it

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
