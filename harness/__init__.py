"""harness: count the work of a PyTorch model and measure how well the hardware does it.

Public API (documented in README.md):

- :func:`profile` — measure, profile, count and join a model on its inputs.
- :func:`run_scenario` — the same for a scenario (built-in name or file path).
- :func:`count` — exact params, MACs, FLOPs and bytes of what PyTorch actually runs.

Names are imported lazily so that ``import harness`` (and the CLI's ``--help``) stay fast.
"""
from __future__ import annotations

from .version import __version__

__all__ = ["profile", "run_scenario", "count", "Counts", "Run", "HarnessError", "__version__"]


def __getattr__(name: str):
    if name in ("profile", "run_scenario", "Run"):
        from .pipeline import run

        return getattr(run, name)
    if name in ("count", "Counts"):
        import importlib

        # the package harness.count is itself callable: harness.count(model, inputs)
        mod = importlib.import_module(".count", __name__)
        return mod if name == "count" else mod.Counts
    if name == "HarnessError":
        from .errors import HarnessError

        return HarnessError
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
