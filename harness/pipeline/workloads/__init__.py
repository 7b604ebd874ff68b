"""Workloads by name: ``forward``, ``generate`` (prefill, decode) and ``train`` (forward, backward, optimizer).

A workload is one file and one :func:`register` line (README "Adding a workload"). The
registry is read by the command line (each workload's :class:`Option` s become flags of every
verb that runs a scenario), by the stages (:func:`get`) and by every output (:func:`word`,
:func:`figures`). Importing it loads neither torch nor pandas.
"""
from __future__ import annotations

import re

from ...errors import HarnessError
from .base import Figure, Option, PhaseScope, Workload, figure_lines, no_scope
from .forward import Forward
from .generate import Generate
from .train import Train

WORKLOADS: dict[str, type[Workload]] = {}

__all__ = ["get", "names", "register", "unregister", "cls_for", "declared_options", "word", "figures",
           "history_columns", "phase_p50s", "render", "figure_lines", "Workload", "Option", "Figure", "PhaseScope",
           "no_scope", "WORKLOADS"]


def register(cls: type[Workload]) -> type[Workload]:
    """Add a workload class (usable as a decorator). Its options must agree with every other
    workload's option of the same name (one flag, one meaning)."""
    if not cls.name or not cls.phases:
        raise ValueError(f"{cls.__name__}: a workload needs a name and at least one phase")
    if cls.name in WORKLOADS and WORKLOADS[cls.name] is not cls:
        raise ValueError(f"a workload named {cls.name!r} is already registered ({WORKLOADS[cls.name].__name__})")
    shared = declared_options()
    for opt in cls.options_declared:
        other = shared.get(opt.name)
        if other is not None and (other.type, other.choices, other.plural) != (opt.type, opt.choices, opt.plural):
            raise ValueError(f"{cls.__name__}: option {opt.flag} differs from the one another workload declares")
    WORKLOADS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a workload added with :func:`register` (tests)."""
    WORKLOADS.pop(name, None)


def names() -> list[str]:
    return list(WORKLOADS)


def cls_for(name: str | None) -> type[Workload] | None:
    """The registered class of a workload name (None for an unknown one: an old run's)."""
    return WORKLOADS.get((name or "forward").strip().lower())


def get(name: str | None, **options) -> Workload:
    """The workload called ``name`` (default ``forward``) with its options; exit 2 for an unknown one."""
    cls = cls_for(name)
    if cls is None:
        raise HarnessError(f"unknown workload '{name}'; use one of {', '.join(WORKLOADS)}")
    return cls(**options)


def declared_options() -> dict[str, Option]:
    """Every registered workload's options by name (the flags of every verb that runs a scenario)."""
    out: dict[str, Option] = {}
    for cls in WORKLOADS.values():
        for opt in cls.options_declared:
            out.setdefault(opt.name, opt)
    return out


for _cls in (Forward, Generate, Train):
    register(_cls)


def word(summary: dict | None, plural: bool = False) -> str:
    """What one iteration of a run's workload is called: forward, generation, training step."""
    cls = cls_for((summary or {}).get("workload"))
    if cls is None:
        return "iterations" if plural else "iteration"
    return cls.plural if plural else cls.word


def figures(summary: dict) -> list[Figure]:
    """A run summary's own rows: its workload's ([] when it has none or is not registered), then how the
    model was compiled (``--compile``), so that every output that shows the rows shows that too."""
    cls = cls_for(summary.get("workload"))
    rows = cls.figures(summary) if cls is not None else []
    if summary.get("compile"):
        from ..compiled import describe, describe_vs_eager

        rows.append(Figure("compiled", describe(summary["compile"]).removeprefix("compiled ")))
        if summary["compile"].get("vs_eager"):
            rows.append(Figure("vs eager", describe_vs_eager(summary["compile"]["vs_eager"])))
    return rows


def history_columns(summary: dict) -> dict[str, str]:
    """A run's history columns (column -> phase): its registered workload's ``history_columns()``; for a
    workload not registered here, the base rule (``<phase>_p50_s`` when it has several phases)."""
    cls = cls_for(summary.get("workload"))
    if cls is not None:
        return cls.history_columns()
    phases = [p for p in (summary.get("phases") or {}) if re.fullmatch(r"[a-z][a-z0-9_]*", str(p))]
    return {f"{p}_p50_s": p for p in phases} if len(phases) > 1 else {}


def phase_p50s(summary: dict) -> dict[str, float | None]:
    """Each of a run's :func:`history_columns` with ``summary["phases"][phase]["time_s"]["p50"]`` (None if absent)."""
    phases = summary.get("phases") or {}
    return {col: ((phases.get(phase) or {}).get("time_s") or {}).get("p50")
            for col, phase in history_columns(summary).items()}


def render(summary: dict) -> str:
    """The workload's own terminal lines for a run summary ('' when it has none)."""
    return figure_lines(figures(summary))
