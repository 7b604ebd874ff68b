"""Pictures of runs over time and over a sweep: ``history --plot`` and ``sweep.png``.

matplotlib through its object API on an Agg canvas (the helpers of :mod:`.pictures`): no
pyplot, no global backend switch; each picture is rendered to bytes and written atomically.

**history --plot** - two panels against the run number (oldest first; days of idle time take
no room): latency p50 (a band up to p90) and achieved FLOP/s, one line per config, both on
**log axes**, so an 8 ms model and a 2.5 s one each show their own changes. At most
:data:`MAX_CONFIGS` configs are drawn: the ones run most recently (the title says "10 most
recent of 30 configs"). Runs whose machine was disturbed (history's ``disturbed`` column) are
drawn as hollow markers. The legend sits outside the axes, to the right, so it covers no point.

**sweep.png** - latency p50 per iteration (named by the workload's word: "per generation"),
for a workload judged by one phase that phase's p50 too (generate: the decode step), and achieved
FLOP/s, against the swept dimension (batch size, or a swept workload option such as the prompt
length; whole numbers on a log 2 axis, words such as optimizers as categories), one line per
(dtype, threads and the other swept dimensions); failed points are marked with a red x,
disturbed points hollow; the legend sits below the axes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..core import dtypes
from ..core.units import seconds, si
from ..errors import HarnessError
from .pictures import new_figure, save_png

MAX_CONFIGS = 10
COLORS = [f"C{i}" for i in range(10)]


def _positive(values) -> list[float]:
    """Values for a log axis: missing and non-positive values become NaN (a gap in the line)."""
    out = []
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = math.nan
        out.append(v if v > 0 else math.nan)
    return out


def _flag(v) -> bool:
    try:
        return bool(v) and v == v
    except (TypeError, ValueError):  # pd.NA
        return False


# --------------------------------------------------------------------------- history

def recent_configs(df, limit: int = MAX_CONFIGS) -> tuple[list, int]:
    """``([(config_key, rows), ...], total)``: the ``limit`` configs whose last run is newest, oldest first."""
    groups = list(df.groupby("config_key", sort=False))
    groups.sort(key=lambda kv: kv[1]["x"].max())
    return groups[-limit:], len(groups)


def _history_lines(ax_lat, ax_rate, key, g, color, label) -> None:
    x = g["x"].tolist()
    p50, p90 = _positive(g["latency_p50_s"]), _positive(g["latency_p90_s"])
    rate = _positive(g["achieved_flop_per_s"])
    dist = [_flag(v) for v in g["disturbed"]] if "disturbed" in g else [False] * len(x)
    ax_lat.plot(x, p50, color=color, label=label, linewidth=1.5)
    ax_lat.fill_between(x, p50, p90, color=color, alpha=0.15, linewidth=0)
    ax_rate.plot(x, rate, color=color, linewidth=1.5)
    for ax, ys in ((ax_lat, p50), (ax_rate, rate)):
        quiet = [(a, b) for a, b, d in zip(x, ys, dist) if not d]
        loud = [(a, b) for a, b, d in zip(x, ys, dist) if d]
        if quiet:
            ax.plot(*zip(*quiet), linestyle="", marker="o", ms=4, color=color)
        if loud:
            ax.plot(*zip(*loud), linestyle="", marker="o", ms=6, markerfacecolor="white", color=color)


def history_figure(df, out: str | Path, label_of) -> Path:
    """Write the history picture (see the module doc) of the rows ``df`` (history.csv's columns)
    to ``out``; ``label_of(row)`` names a config in the legend."""
    import pandas as pd
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if df.empty:
        raise HarnessError("nothing to plot: no runs selected")
    df = df.copy()
    df["t"] = pd.to_datetime(df["started_at"], utc=True, errors="coerce", format="ISO8601")
    df = df.sort_values(["t", "run_id"], kind="stable", na_position="first").reset_index(drop=True)
    df["x"] = range(1, len(df) + 1)
    groups, total = recent_configs(df)
    fig = new_figure(11, 6.5)
    ax_lat, ax_rate = fig.subplots(2, 1, sharex=True)
    for i, (key, g) in enumerate(groups):
        _history_lines(ax_lat, ax_rate, key, g, COLORS[i % len(COLORS)], label_of(g.iloc[0]))
    ax_lat.set_ylabel("latency (log axis)\nline p50, band up to p90")
    ax_rate.set_ylabel("achieved FLOP/s (log axis)")
    for ax, fmt in ((ax_lat, lambda v, _: seconds(v)), (ax_rate, lambda v, _: si(v, "FLOP/s"))):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(fmt))
        ax.yaxis.set_minor_formatter(FuncFormatter(fmt))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
    ax_rate.xaxis.set_major_locator(MaxNLocator(integer=True))
    span = ""
    if df["t"].notna().any():
        span = f"  ({df['t'].min():%Y-%m-%d %H:%M} to {df['t'].max():%Y-%m-%d %H:%M} UTC)"
    ax_rate.set_xlabel(f"run number, oldest first{span}")
    scen = sorted(set(df["scenario"].dropna()))
    title = "harness history" + (f": {scen[0]}" if len(scen) == 1 else "")
    if total > len(groups):
        title += f" ({len(groups)} most recent of {total} configs)"
    ax_lat.set_title(title)
    handles, labels = ax_lat.get_legend_handles_labels()
    handles.append(Line2D([], [], linestyle="", marker="o", ms=6, markerfacecolor="white", color="grey"))
    labels.append("hollow: machine disturbed during the run")
    fig.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(0.99, 0.93), frameon=False)
    fig.subplots_adjust(right=0.98, hspace=0.08)
    return save_png(fig, out)


# --------------------------------------------------------------------------- sweep

def _sweep_label(r: dict, series: list[str]) -> str:
    """A line's legend: dtype and threads, then the other swept dimensions (``bs 4``, ``optimizer sgd``)."""
    th = int(r["threads"]) if r["threads"] is not None else None
    out = f"{dtypes.short(r['dtype'])}, {th if th is not None else 'default'} thread{'s' if th != 1 else ''}"
    return out + "".join(f", {'bs' if d == 'batch_size' else d} {r[d]}" for d in series)


def _x_positions(rows: list[dict], x: str) -> tuple[dict, bool]:
    """Where each value of the swept dimension sits: itself for numbers, its index for words (categories)."""
    values = list(dict.fromkeys(r[x] for r in rows if r[x] is not None))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {v: v for v in sorted(values)}, True
    return {v: i for i, v in enumerate(values)}, False


def _sweep_axes(ax, pos: dict, numeric: bool, failed: set, x_label: str) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xlabel(x_label)
    ticks = list(pos.values())
    if numeric and len(ticks) > 1 and min(ticks) > 0:
        ax.set_xscale("log", base=2)
    if not numeric:
        ax.set_xlim(-0.5, len(ticks) - 0.5)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(v) for v in pos])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    for xv in sorted(failed):
        ax.axvline(xv, color="crimson", alpha=0.4, linestyle=":", linewidth=1.2)
        ax.plot([xv], [0], marker="x", color="crimson", markersize=9, mew=2, clip_on=False, zorder=5)
        ax.annotate("failed", (xv, 0), textcoords="offset points", xytext=(0, 9), ha="center", color="crimson",
                    fontsize=8)


def _sweep_panels(scenario: str, word: str, phase_column: str | None) -> list[tuple[str, str, Any]]:
    """(title, y label, value of a row) of each panel: latency, the judged phase when there is one, FLOP/s."""
    ms = lambda col: lambda r: (r.get(col) or math.nan) * 1e3  # noqa: E731
    panels = [(f"{scenario}: latency (p50) per {word}", "latency p50 (ms)", ms("latency_p50_s"))]
    if phase_column:
        what = phase_column.removesuffix("_p50_s").replace("_", " ")
        panels.append((f"{scenario}: {what} (p50)", f"{what} p50 (ms)", ms(phase_column)))
    panels.append((f"{scenario}: achieved FLOP/s", "achieved GFLOP/s",
                   lambda r: (r["achieved_flop_per_s"] or math.nan) / 1e9))
    return panels


def sweep_figure(rows: list[dict], out: str | Path, scenario: str, *, x: str = "batch_size",
                 x_label: str = "batch size", word: str = "iteration", phase_column: str | None = None,
                 series: list[str] | tuple = ()) -> Path:
    """Latency p50 per ``word`` (and ``phase_column``'s p50) and achieved FLOP/s against the swept dimension
    ``x``, one line per (dtype, threads, each of ``series`` that varies); failures marked."""
    from matplotlib.lines import Line2D

    panels = _sweep_panels(scenario, word, phase_column)
    fig = new_figure(5.5 * len(panels), 4.8)
    axes = fig.subplots(1, len(panels))
    series = [d for d in series if d != x and len({r.get(d) for r in rows}) > 1]
    pos, numeric = _x_positions(rows, x)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["threads"], *(r.get(d) for d in series)), []).append(r)
    for i, rs in enumerate(groups.values()):
        ok = sorted((r for r in rs if r["status"] == "ok" and r[x] is not None), key=lambda r: pos[r[x]])
        if ok:
            _sweep_lines(axes, panels, [pos[r[x]] for r in ok], ok, COLORS[i % len(COLORS)],
                         _sweep_label(ok[0], series))
    failed = {pos[r[x]] for r in rows if r["status"] != "ok" and r[x] is not None}
    for ax, (title, ylabel, _) in zip(axes, panels):
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        _sweep_axes(ax, pos, numeric, failed, x_label)
    handles, labels = axes[0].get_legend_handles_labels()
    if failed:
        handles.append(Line2D([], [], marker="x", color="crimson", linestyle="", markersize=9, mew=2))
        labels.append("a point failed there (reason in sweep.csv)")
    if any(_flag(r.get("disturbed")) for r in rows):
        handles.append(Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle="", ms=8))
        labels.append("hollow: machine disturbed at that point")
    fig.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 4),
               frameon=False)
    return save_png(fig, out)


def _sweep_lines(axes, panels, xs: list, ok: list[dict], color: str, label: str) -> None:
    """One line per panel for one group of points; disturbed points hollow."""
    for ax, (_, _, value) in zip(axes, panels):
        ys = [value(r) for r in ok]
        ax.plot(xs, ys, marker="o", color=color, label=label)
        loud = [(a, b) for a, b, r in zip(xs, ys, ok) if _flag(r.get("disturbed"))]
        if loud:
            ax.plot(*zip(*loud), linestyle="", marker="o", ms=8, markerfacecolor="white", color=color)
