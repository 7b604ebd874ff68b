"""Phases of a workload in the report: ``forward``; ``prefill``/``decode``;
``forward``/``backward``/``optimizer``.

``summary["phases"]`` maps a phase name to its figures (``macs``, ``flops``, ``other_flops``,
``bytes``, ``achieved_flop_per_s``, ``achieved_bytes_per_s``, ``utilization``, ``time_s``: the
un-profiled latency stats of that phase); ops and modules may carry a ``phase`` column. With
one phase or none (every run before phases existed) the report shows no per-phase parts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported by the callers' DataFrames; the CLI parser stays light
    import pandas as pd

from ..core.units import percent, seconds, si
from .cells import num

PHASE_HEADERS = ["Phase", "Time p50 (s, un-profiled)", "MACs (MAC)", "FLOPs (FLOP, 2 × MACs)",
                 "Other FLOPs (FLOP)", "Bytes (B)", "Achieved (FLOP/s)", "Utilization (% of peak FLOP/s)"]


def phase_table(summary: dict) -> dict[str, dict]:
    """``summary["phases"]`` when there is more than one phase, else ``{}``."""
    phases = (summary or {}).get("phases")
    if not isinstance(phases, dict) or len(phases) < 2:
        return {}
    return {str(k): (v if isinstance(v, dict) else {}) for k, v in phases.items()}


def phase_rows(summary: dict) -> list[list[str]]:
    """One formatted row per phase (headers :data:`PHASE_HEADERS`), in the summary's order."""
    rows = []
    for name, p in phase_table(summary).items():
        t = p.get("time_s")
        p50 = t.get("p50") if isinstance(t, dict) else t
        rows.append([name, seconds(num(p50)), si(num(p.get("macs")), "MAC"), si(num(p.get("flops")), "FLOP"),
                     si(num(p.get("other_flops")), "FLOP"), si(num(p.get("bytes")), "B"),
                     si(num(p.get("achieved_flop_per_s")), "FLOP/s"), percent(num(p.get("utilization")))])
    return rows


def phases_in(summary: dict, df: pd.DataFrame | None) -> list[str]:
    """The phases a table of ``df`` is split into: the summary's phases (when more than one) if
    ``df`` has a ``phase`` column, else ``[]`` (one table)."""
    if df is None or "phase" not in df.columns:
        return []
    return list(phase_table(summary))


def phase_op_times(ops: pd.DataFrame, phases: list[str]) -> dict[str, float]:
    """Profiled op time per iteration of each phase: the dispatch-level ops' ``self_time_s`` summed
    (the operator tables' basis; every occurrence of a phase in an iteration counts)."""
    import pandas as pd

    from .cells import dispatch_level

    rows = dispatch_level(ops)
    by = pd.to_numeric(rows["self_time_s"], errors="coerce").fillna(0.0).groupby(rows["phase"].astype(str)).sum()
    return {p: float(by.get(p, 0.0)) for p in phases}


def largest_phase(ops: pd.DataFrame, phases: list[str]) -> str:
    """The phase with the most profiled op time per iteration (the first one on a tie)."""
    times = phase_op_times(ops, phases)
    return max(phases, key=lambda p: (times[p], -phases.index(p)))


def rows_of_phase(df: pd.DataFrame | None, phase: str) -> pd.DataFrame | None:
    """The rows of ``df`` in ``phase`` (``df`` itself when it has no ``phase`` column)."""
    if df is None or "phase" not in df.columns:
        return df
    return df[df["phase"].astype(str) == phase]


def per_phase(summary: dict, df: pd.DataFrame | None) -> list[tuple[str | None, pd.DataFrame | None]]:
    """The one ops/modules-by-phase iterator: ``[(phase, its rows)]`` when the run has several phases
    and ``df`` a phase column, else ``[(None, df)]``."""
    phases = phases_in(summary, df)
    return [(p, rows_of_phase(df, p)) for p in phases] if phases else [(None, df)]


def phase_point(p: dict) -> dict:
    """A phase as a roofline point: ``{"total_flops", "bytes", "time_s"}`` (time = un-profiled p50)."""
    t = p.get("time_s")
    p50 = t.get("p50") if isinstance(t, dict) else t
    return {"total_flops": (num(p.get("flops")) or 0) + (num(p.get("other_flops")) or 0),
            "flops": num(p.get("flops")) or 0, "bytes": num(p.get("bytes")) or 0, "time_s": num(p50) or 0,
            "utilization": num(p.get("utilization"))}
