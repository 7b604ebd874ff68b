"""Errors a user can act on.

A :class:`HarnessError` carries a one-line message and an exit code; the CLI
prints the message (no traceback unless ``--debug``) and exits with the code.
Exit codes are a public contract: 0 ok, 1 regression verdict, 2 bad input,
130 interrupted.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class HarnessError(Exception):
    """An error with a one-line, actionable message and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
