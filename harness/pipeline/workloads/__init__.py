"""Workloads by name. ``forward`` and ``generate`` are built; ``train`` is planned."""
from __future__ import annotations

from ...errors import HarnessError
from .base import PhaseScope, Workload, no_scope
from .forward import Forward
from .generate import Generate

WORKLOADS: dict[str, type[Workload]] = {"forward": Forward, "generate": Generate}
PLANNED = {
    "train": "a training step (forward, backward and optimizer phases)",
}

__all__ = ["get", "names", "Workload", "PhaseScope", "no_scope", "WORKLOADS"]


def render(summary: dict) -> str:
    """The workload's own terminal lines for a run summary ('' when it has none)."""
    cls = WORKLOADS.get(summary.get("workload") or "forward")
    return cls.render(summary) if cls is not None else ""


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
