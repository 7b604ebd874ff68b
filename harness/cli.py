"""The command line: a thin layer over the Python API.

Each verb lives in ``harness/commands/<verb>.py`` with ``add_parser(subparsers)`` and
``main(args) -> int``. Errors a user can act on are one line on stderr with exit code 2
(no traceback unless ``--debug``); Ctrl-C exits 130; 1 is reserved for a regression verdict.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, HarnessError

VERBS = ["run", "list", "count", "plan", "devices", "calibrate", "history", "history_check", "compare", "ab", "sweep"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), pointing at --help."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness", description="Count the work of a PyTorch model and measure how well the hardware does it.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for verb in VERBS:
        importlib.import_module(f".commands.{verb}", __package__).add_parser(sub)
    return parser


def subcommand(argv: list[str]) -> list[str]:
    """``history check ...`` -> ``history-check ...`` (``history``'s own positional is a scenario, so its
    check is a parser of its own; a scenario named check is ``history check.py``)."""
    argv = list(argv)
    i = next((k for k, a in enumerate(argv) if not a.startswith("-")), None)
    if i is not None and argv[i] == "history" and argv[i + 1:i + 2] == ["check"]:
        argv[i:i + 2] = ["history-check"]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = subcommand(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HARNESS_DEBUG") == "1"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except HarnessError as exc:
        if debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: nothing was written for this run; earlier results are unchanged", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
