"""Workloads by name. ``forward`` is built; ``generate`` and ``train`` are planned."""
from __future__ import annotations

from ...errors import HarnessError
from .base import PhaseScope, Workload, no_scope
from .forward import Forward
from .train import Train

WORKLOADS: dict[str, type[Workload]] = {"forward": Forward, "train": Train}
PLANNED = {
    "generate": "LLM generation (prefill and decode phases)",
}

__all__ = ["get", "names", "Workload", "PhaseScope", "no_scope", "WORKLOADS"]


def names() -> list[str]:
    return list(WORKLOADS)


def get(name: str | None, **options) -> Workload:
    """The workload called ``name`` (default ``forward``); exit 2 for unknown or unbuilt ones."""
    key = (name or "forward").strip().lower()
    if key in WORKLOADS:
        return WORKLOADS[key](**options)
    if key in PLANNED:
        raise HarnessError(f"--workload {key} ({PLANNED[key]}) is not available yet; use --workload forward")
    raise HarnessError(f"unknown workload '{name}'; use one of {', '.join(WORKLOADS)}")
