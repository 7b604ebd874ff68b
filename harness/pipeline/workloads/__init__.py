"""Workloads by name: ``forward``, ``generate`` (prefill, decode) and ``train`` (forward, backward, optimizer)."""
from __future__ import annotations

from ...errors import HarnessError
from .base import PhaseScope, Workload, no_scope
from .forward import Forward
from .generate import Generate
from .train import Train

WORKLOADS: dict[str, type[Workload]] = {"forward": Forward, "generate": Generate, "train": Train}

__all__ = ["get", "names", "Workload", "PhaseScope", "no_scope", "WORKLOADS"]


def render(summary: dict) -> str:
    """The workload's own terminal lines for a run summary ('' when it has none)."""
    cls = WORKLOADS.get(summary.get("workload") or "forward")
    return cls.render(summary) if cls is not None else ""


def names() -> list[str]:
    return list(WORKLOADS)


def get(name: str | None, **options) -> Workload:
    """The workload called ``name`` (default ``forward``); exit 2 for an unknown one."""
    key = (name or "forward").strip().lower()
    if key in WORKLOADS:
        return WORKLOADS[key](**options)
    raise HarnessError(f"unknown workload '{name}'; use one of {', '.join(WORKLOADS)}")
