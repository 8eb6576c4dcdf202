"""The one console every command prints with, and the exit codes they share."""

from __future__ import annotations

import sys

from rich.console import Console

EXIT_INVALID = 2  # bad input: one line per problem on stderr, no traceback


def console(stream=None) -> Console:
    stream = stream or sys.stdout
    # a pipe or CI log gets a wide layout instead of rich's 80-column default
    return Console(file=stream, width=None if stream.isatty() else 180, highlight=False, soft_wrap=False)


def err(message: str) -> None:
    print(message, file=sys.stderr)
