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


def forward_error(scenario: str, exc: BaseException, where: str = "forward") -> HarnessError:
    """The one wording for a model that raised while running (timed, profiled, counted, swept).

    Out of memory and a dtype the device cannot run get their own advice; anything else
    names the scenario, the exception type and its first line.
    """
    from .core.text import first_line

    msg = first_line(exc)
    if isinstance(exc, TypeError) and "unexpected keyword argument" in msg:
        return HarnessError(f"scenario '{scenario}': the model's forward does not accept these inputs ({msg}); "
                            "check make_inputs' dict keys")
    if "not implemented for" in msg and any(t in msg for t in ("'Half'", "'BFloat16'")):
        return HarnessError(f"scenario '{scenario}': this device cannot run the model in this dtype ({msg[:200]}); "
                            "use --dtype float32")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in msg.lower():
        return HarnessError(f"scenario '{scenario}' ran out of memory in {where} ({msg[:200]}); try a smaller --batch-size")
    return HarnessError(f"scenario '{scenario}': the model raised in {where}: {type(exc).__name__}: {msg[:300]}")
