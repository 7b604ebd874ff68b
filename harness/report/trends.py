"""Pictures of runs over time and over a sweep: ``history --plot`` and ``sweep.png``.

matplotlib through its object API on an Agg canvas (the helpers of :mod:`.pictures`): no
pyplot, no global backend switch; each picture is rendered to bytes and written atomically.

**history --plot** - two panels against the run number (oldest first; days of idle time take
no room): latency p50 (a band up to p90) and achieved FLOP/s, one line per config, both on
**log axes**, so an 8 ms model and a 2.5 s one each show their own changes. At most
:data:`MAX_CONFIGS` configs are drawn: the ones run most recently (the title says "10 most
recent of 30 configs"). Runs whose machine was disturbed (history's ``disturbed`` column) are
drawn as hollow markers. The legend sits outside the axes, to the right, so it covers no point.

**sweep.png** - latency p50 and achieved FLOP/s against batch size (log 2 axis), one line per
(dtype, threads); failed batch sizes are marked with a red x, disturbed points hollow; the
legend sits below the axes.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..core import dtypes
from ..core.units import seconds, si
from ..errors import HarnessError
from .pictures import _figure, _save

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
    fig = _figure(11, 6.5)
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
    return _save(fig, out)


# --------------------------------------------------------------------------- sweep

def _sweep_label(dt, th) -> str:
    th = int(th) if th is not None else None
    return f"{dtypes.short(dt)}, {th if th is not None else 'default'} thread{'s' if th != 1 else ''}"


def _sweep_axes(ax, all_bs: list[int], failed_bs: set) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xlabel("batch size")
    if len(all_bs) > 1 and min(all_bs) > 0:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(all_bs))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in all_bs])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    for bs in sorted(failed_bs):
        ax.axvline(bs, color="crimson", alpha=0.4, linestyle=":", linewidth=1.2)
        ax.plot([bs], [0], marker="x", color="crimson", markersize=9, mew=2, clip_on=False, zorder=5)
        ax.annotate("failed", (bs, 0), textcoords="offset points", xytext=(0, 9), ha="center", color="crimson",
                    fontsize=8)


def sweep_figure(rows: list[dict], out: str | Path, scenario: str) -> Path:
    """Latency p50 and achieved FLOP/s against batch size, one line per (dtype, threads); failures marked."""
    from matplotlib.lines import Line2D

    fig = _figure(11, 4.8)
    ax1, ax2 = fig.subplots(1, 2)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["threads"]), []).append(r)
    failed_bs = {r["batch_size"] for r in rows if r["status"] != "ok"}
    for i, ((dt, th), rs) in enumerate(groups.items()):
        ok = sorted((r for r in rs if r["status"] == "ok"), key=lambda r: r["batch_size"])
        if not ok:
            continue
        x = [r["batch_size"] for r in ok]
        for ax, ys in ((ax1, [r["latency_p50_s"] * 1e3 for r in ok]),
                       (ax2, [(r["achieved_flop_per_s"] or math.nan) / 1e9 for r in ok])):
            ax.plot(x, ys, marker="o", color=COLORS[i % len(COLORS)], label=_sweep_label(dt, th))
            loud = [(a, b) for a, b, r in zip(x, ys, ok) if _flag(r.get("disturbed"))]
            if loud:
                ax.plot(*zip(*loud), linestyle="", marker="o", ms=8, markerfacecolor="white",
                        color=COLORS[i % len(COLORS)])
    ax1.set_title(f"{scenario}: latency (p50) per iteration")
    ax1.set_ylabel("latency p50 (ms)")
    ax2.set_title(f"{scenario}: achieved FLOP/s")
    ax2.set_ylabel("achieved GFLOP/s")
    all_bs = sorted({r["batch_size"] for r in rows})
    for ax in (ax1, ax2):
        _sweep_axes(ax, all_bs, failed_bs)
    handles, labels = ax1.get_legend_handles_labels()
    if failed_bs:
        handles.append(Line2D([], [], marker="x", color="crimson", linestyle="", markersize=9, mew=2))
        labels.append("a point failed there (reason in sweep.csv)")
    if any(_flag(r.get("disturbed")) for r in rows):
        handles.append(Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle="", ms=8))
        labels.append("hollow: machine disturbed at that point")
    fig.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 4),
               frameon=False)
    return _save(fig, out)
