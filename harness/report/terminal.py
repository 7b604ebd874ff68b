"""What ``python -m harness run`` prints: the summary and the operator table.

Which time each figure uses, named where it is printed:

* the headline (latency, achieved FLOP/s, utilization) uses the **un-profiled p50**;
* breakdowns (operators, modules, their FLOP/s and shares) use the **profiled op time**
  per forward (``profiled.op_time_per_forward_s``, the same total as the module tree's
  root and time_by_module.png).

Operator rows and their cells follow :mod:`harness.report.cells` (dispatch-level ops by
default; labels and nested rows with ``all_rows``). Warnings (noisy or disturbed timing, a
peak exceeded) come from :mod:`harness.report.caveats`, one line each.
"""
from __future__ import annotations

import textwrap

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported by the callers' DataFrames; the CLI parser stays light
    import pandas as pd

from ..core.units import percent, seconds, si
from ..errors import HarnessError
from .caveats import exceeded_names, timing_noise, warnings
from .cells import CACHE_LEGEND, cache_marked, calls_column, dispatch_level, iteration_word, num, op_cells
from .phases import PHASE_HEADERS, largest_phase, phase_rows, phase_table, phases_in, rows_of_phase

# The seeds' key_averages().table(sort_by=...) names, mapped to ops.csv columns.
SORT_KEYS = {
    "self_time": "self_time_s",
    "self_cpu_time_total": "self_cpu_time_total_s",
    "cpu_time_total": "cpu_time_total_s",
    "self_cpu_memory_usage": "self_cpu_memory_usage_bytes",
    "cpu_memory_usage": "cpu_memory_usage_bytes",
    "self_cuda_time_total": "self_device_time_total_s",
    "cuda_time_total": "device_time_total_s",
    "self_device_time_total": "self_device_time_total_s",
    "device_time_total": "device_time_total_s",
    "flops": "flops",
    "count": "calls",
    "calls": "calls",
}

# profiler columns that count an op's nested calls too: shown only when sorted by, or with all_rows
PROFILER_COLUMNS = {
    "self_cpu_time_total_s": "prof self CPU", "cpu_time_total_s": "prof CPU total",
    "self_device_time_total_s": "prof self dev", "device_time_total_s": "prof dev total",
    "self_cpu_memory_usage_bytes": "prof self mem",
}
NAME_WIDTH = 40
MAX_PHASE_TABLES = 3  # more phases than this: the operator table of the largest one only


def _plural(n, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------- summary --

def render_summary(summary: dict) -> str:
    """The run in a dozen aligned lines, then one line per warning."""
    s = summary
    lines = [f"{s['scenario']} · batch {s['batch_size']} · {s['dtype']} · {s['device']} "
             f"({s.get('device_name')}, {_plural(s.get('threads'), 'thread')})"]

    def row(k: str, v: str) -> None:
        lines.append(f"  {k:<14}{v}")

    row("params", f"{si(s['params'])} ({s['params']:,})")
    row("work", f"{si(s['macs'], 'MAC')} = {si(s['flops'], 'FLOP')}   + {si(s['other_flops'], 'FLOP')} other"
                f"   · {si(s['bytes'], 'B')} moved")
    row("latency", _latency(s))
    row("achieved", _achieved(s))
    if s.get("mem_bandwidth_bytes_per_s"):
        ai = s.get("arithmetic_intensity")
        row("bandwidth", f"{si(s.get('achieved_bytes_per_s'), 'B/s')} of {si(s['mem_bandwidth_bytes_per_s'], 'B/s')}"
                         + (f"   · intensity {si(ai, 'FLOP/B')}" if ai else ""))
    row("peak memory", _memory(s))
    row("profiled", _profiled(s))
    if (s.get("compile") or {}).get("fusion"):
        from .kernels_line import kernels_line

        row("kernels", kernels_line(s))
    cov = s.get("coverage") or {}
    if cov.get("top_uncounted_by_time"):
        row("uncounted", ", ".join(f"{u['op']} ({seconds(u['time_s'])})" for u in cov["top_uncounted_by_time"][:3]))
    row("files", f"{s.get('path')}/")
    from ..pipeline.workloads import render

    lines += [line for line in render(s).split("\n") if line]
    lines += [f"warning: {w}" for w in warnings(s)]
    if phase_table(s):
        lines += ["", "Phases (time: un-profiled p50 of each phase)", *_grid(PHASE_HEADERS, phase_rows(s))]
    return "\n".join(lines)


def _memory(s: dict) -> str:
    """The measured peak by category (memory.csv) when the run has it; else weights + inputs + activations."""
    from ..memory.measured import forecast_text, render as memory_row

    measured = memory_row(s.get("memory"))
    if measured:
        forecast = forecast_text(s.get("memory"))
        return measured + " measured (memory.csv)" + (f" · {forecast}" if forecast else "")
    act = s.get("peak_activation_bytes")
    return f"{si(s.get('peak_memory_bytes'), 'B')}" + (
        f" (weights {si(s.get('weights_bytes'), 'B')} + activations {si(act, 'B')})"
        if s["device"] == "cpu" and act is not None else "")


def _latency(s: dict) -> str:
    lat = s["latency_s"]
    text = (f"p50 {seconds(lat['p50'])}   p90 {seconds(lat['p90'])}   min {seconds(lat['min'])}"
            f"   std {seconds(lat['std'])}   ({lat['n']} iters after {s['warmup']} warm-up, un-profiled)")
    return text + ("   NOISY (see warning)" if timing_noise(s) else "")


def _achieved(s: dict) -> str:
    peak = s.get("peak_flop_per_s")
    peak_txt = f"{si(peak, 'FLOP/s')} ({s.get('peak_source')})" if peak else "unknown peak"
    out = (f"{si(s.get('achieved_flop_per_s'), 'FLOP/s')} (FLOPs / p50) of {peak_txt}"
           f"  → utilization {percent(s.get('utilization'))}")
    if exceeded_names(s, "run"):
        out += " (above the ceiling: see warning)"
    elif s.get("calibrate_hint") or s.get("peak_source") == "derived":
        hint = s.get("calibrate_hint") or f"python -m harness calibrate --threads {s.get('threads')}"
        out += f"   (measure the peak: {hint})"
    return out


def _profiled(s: dict) -> str:
    prof = s.get("profiled") or {}
    cov = s.get("coverage") or {}
    op_t = prof.get("op_time_per_forward_s")
    step_t = prof.get("time_per_forward_s")
    word = iteration_word(s)
    if (s.get("compile") or {}).get("fusion") and cov.get("kernel_time_per_iteration_s") is not None:
        # a compiled run's time is in its kernels (the 'kernels' line), not in dispatch-level ops
        return (f"{_plural(prof.get('steps'), word)}, kernel time {seconds(cov['kernel_time_per_iteration_s'])} per "
                f"{word} (kernels.csv; {seconds(step_t)} with profiler labels)   · coverage "
                f"{percent(cov.get('share_of_kernel_time_counted'))} of kernel time counted")
    t = (f"op time {seconds(op_t)} per {word} (the tables' basis; {seconds(step_t)} with profiler labels)"
         if op_t is not None else f"{seconds(step_t)} per {word} in ops and labels")
    return (f"{_plural(prof.get('steps'), word)}, {t}"
            f"   · coverage {percent(cov.get('share_of_ops'))} of ops, {percent(cov.get('share_of_time'))} of op time")


# -------------------------------------------------------------- operators --

def render_top_ops(ops: pd.DataFrame, summary: dict, *, top: int, sort_by: str, all_rows: bool = False,
                   phase: str | None = None) -> str:
    """The top ``top`` operators by ``sort_by`` (a :data:`SORT_KEYS` name), per iteration.

    Default: dispatch-level ops (``kind == "op"``); ``all_rows``: labels and nested rows too,
    with a kind column and the profiler's own time and memory columns (which count nested calls).
    With several phases (a ``phase`` column and ``summary["phases"]``): one table per phase when
    there are at most :data:`MAX_PHASE_TABLES`, else the largest phase's, saying so; ``phase``
    picks one (exit 2 for a phase the run does not have, naming its phases).
    """
    col = SORT_KEYS[sort_by]
    if col not in ops.columns:
        raise HarnessError(f"--sort-by {sort_by} is not available on {summary['device']} runs")
    phases, note = _phases_shown(ops, summary, phase)
    kw = dict(top=top, col=col, sort_by=sort_by, all_rows=all_rows)
    if not phases:
        return _ops_block(ops, summary, phase=None, **kw)
    blocks = [_ops_block(rows_of_phase(ops, p), summary, phase=p, **kw) for p in phases]
    return "\n\n".join(([note] if note else []) + blocks)


def check_phase(phase: str, names: list[str] | tuple[str, ...], whose: str = "this run's") -> None:
    """Exit 2 (HarnessError) when ``phase`` is not one of ``names``, listing them."""
    if phase not in names:
        raise HarnessError(f"--phase {phase}: {whose} phases are {', '.join(names)}")


def _phases_shown(ops: pd.DataFrame, s: dict, phase: str | None) -> tuple[list[str], str]:
    """``(phases whose table is shown, a line saying why only one)``: every phase up to
    :data:`MAX_PHASE_TABLES`, else the largest by profiled op time; ``phase`` when given."""
    phases = phases_in(s, ops)
    if phase is not None:
        check_phase(phase, list(s.get("phase_names") or phases or ["forward"]))
        return ([phase] if phases else []), ""
    if len(phases) <= MAX_PHASE_TABLES:
        return phases, ""
    big = largest_phase(ops, phases)
    return [big], (f"showing phase {big}, the largest (most profiled op time) of {len(phases)} phases "
                   f"({', '.join(phases)}); --phase NAME for another")


render_phase_ops = render_top_ops


def _ops_block(ops: pd.DataFrame, s: dict, *, top: int, col: str, sort_by: str, all_rows: bool,
               phase: str | None) -> str:
    rows_df = dispatch_level(ops, all_rows)
    df = rows_df.sort_values(col, ascending=False, kind="stable").head(top)
    calls_col, exact = calls_column(ops)
    extra = [c for c in PROFILER_COLUMNS if c in ops.columns and (all_rows or c == col)]
    head = (["operator"] + (["kind"] if all_rows else []) + ["calls" if exact else "calls*", "time", "share",
            "FLOP", "other FLOP", "moved", "achieved", "of peak", "net alloc"] + [PROFILER_COLUMNS[c] for c in extra])
    hot = exceeded_names(s, "op")
    body: list[list[str]] = []
    for _, r in df.iterrows():
        c = op_cells(r, exceeded=str(r["name"]) in hot)
        name = str(r["name"])
        body.append([name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"]
                    + ([str(r.get("kind", ""))] if all_rows else [])
                    + [_calls(r.get(calls_col)), seconds(num(r.get("self_time_s"))), percent(num(r.get("time_share"))),
                       c.flops, c.other_flops, c.bytes, c.rate, c.rate_utilization, c.net_alloc]
                    + [_profiler_cell(r.get(x), x) for x in extra])
    shown = (f"{_plural(len(body), 'row')} of {len(rows_df)} (every kind)" if all_rows
             else f"{_plural(len(body), 'operator')} of {len(rows_df)} at dispatch level")
    where = f" in phase {phase}" if phase else ""
    title = (f"Top {shown}{where} by {sort_by.replace('_', ' ')}"
             f" (per {iteration_word(s)}; time = profiled self time incl. the kernels the op dispatched)")
    legend = _legend(exact, bool(extra), all_rows, cache_marked(body))
    return "\n".join([title, *_grid(head, body), *legend])


def _legend(exact_calls: bool, profiler_cols: bool, all_rows: bool, cache: bool = False) -> list[str]:
    parts = ["achieved: FLOP/s of multiply-add work, or B/s moved for ops with none (of peak: same kind)",
             "net alloc: allocated − freed inside the op (negative: it freed more)",
             "—: none of that work; uncounted: no formula"]
    if cache:
        parts.append(CACHE_LEGEND)
    if not exact_calls:
        parts.append("calls*: profiler count, nested calls included")
    if profiler_cols:
        parts.append("prof …: torch.profiler's own columns, nested calls included")
    if all_rows:
        parts.append("label/nested rows: no work of their own (a nested row's is in its op's row)")
    return textwrap.wrap("; ".join(parts), 110, initial_indent="  ", subsequent_indent="  ")


def _calls(v) -> str:
    f = num(v)
    return "" if f is None else (f"{f:.0f}" if abs(f - round(f)) < 1e-9 else f"{f:.3g}")


def _profiler_cell(v, col: str) -> str:
    f = num(v)
    if f is None:
        return ""
    return si(f, "B") if col.endswith("_bytes") else seconds(f)


def _grid(head: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned text columns (:func:`harness.core.text.table`): the first left-aligned, the rest right-aligned."""
    from ..core.text import table

    return table(head, rows, right=set(range(1, len(head))))
