"""The one error a command raises for bad input: `main` prints it as one line and exits with code 2."""

from __future__ import annotations


class UsageError(Exception):
    """A bad command-line input: reported as one line on stderr with exit code 2."""
