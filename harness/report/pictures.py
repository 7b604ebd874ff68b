"""The run's two pictures: ``roofline.png`` and ``time_by_module.png``.

matplotlib is imported inside the functions (importing harness stays fast) and used
through its object API on an Agg canvas - no pyplot, no global backend switch. Each
picture is rendered to bytes and written atomically.

**roofline.png** - log-log: x = arithmetic intensity (all counted FLOP / byte), y = achieved
FLOP/s (2×MACs + other FLOPs). Each (op, shape) is a dot at its profiled self time, *area*
proportional to that time; the top few by time are labelled. The whole model is a star at the
un-profiled p50 (the headline's time), its legend giving the summary's own utilization; with
more than one phase each phase gets a star too. Ceilings: the compute peak (horizontal) and one
bandwidth ceiling per memory level (slope 1: FLOP/s = intensity × bytes/s) - L1/L2/L3 dashed
when the peak has calibrated ``cache_bytes_per_s``, else DRAM alone and the legend says
"cache ceilings not calibrated" - with the DRAM ridge point marked. Labels carry each figure's
source (table / derived / calibrated). A point above a ceiling (or named in
``summary["peak_exceeded"]``) gets a red ring and a note: the ceiling is wrong, not the result.
With an unknown peak there is no compute ceiling and the title says so.

**time_by_module.png** - horizontal bars of the top modules by time. Module times are
inclusive (a module's time contains its children's), so bars of a parent and its child
would count the same time twice. The chart therefore shows a *frontier*: all modules
at one depth ``d`` plus the shallower modules that have no children, which partition
the model's time. ``d`` is the shallowest depth whose frontier has at least ``top``
modules (or the deepest level there is): deep enough to be specific, shallow enough to
stay whole blocks. If the frontier is longer than ``top`` the rest is one "other" bar,
and time spent in a parent's own code outside its children is one "outside" bar, so
the bars add up to the model's time. The title names the depth. With several phases
(prefill/decode; forward/backward/optimizer) there is one such panel per phase on a shared
time axis, each headed and labelled with its phase (a module in two phases is two bars, each
saying which), and the title says "per <word>" (forward, generation, training step).

Both functions return what they drew (:class:`RooflinePicture`, :class:`ModulePicture`: the
points, stars, ceilings and legend; the panels and their bars), so tests check the content
rather than the pixels.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..core.fsio import atomic_write_bytes
from ..core.units import percent, seconds, si
from .cells import num
from .phases import phase_point

if TYPE_CHECKING:  # pragma: no cover
    from ..hardware import Peak

DPI = 110
LABEL_TOP_OPS = 5

def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    return atomic_write_bytes(path, buf.getvalue())


def _num(df: pd.DataFrame, col: str, default: float = math.nan) -> pd.Series:
    if col in df:
        return pd.to_numeric(df[col], errors="coerce").astype(float)
    return pd.Series(default, index=df.index, dtype=float)


def _short_op(name: str, width: int = 30) -> str:
    s = str(name).removeprefix("aten::")
    return s if len(s) <= width else s[: width - 1] + "…"


def _si_formatter(unit: str):
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: si(v, unit, digits=3) if v > 0 else "")


def _plain_formatter():
    from matplotlib.ticker import FuncFormatter

    def fmt(v, _pos):
        if v <= 0:
            return ""
        if v >= 1:
            return f"{v:,.0f}"
        return f"{v:.3g}"

    return FuncFormatter(fmt)


# --------------------------------------------------------------------------- roofline

def roofline_points(ops: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The plottable ops: ``(points, skipped)``.

    ``points`` has ``name``, ``time_s``, ``intensity`` (total FLOP / byte) and ``flop_per_s``
    (total FLOP / time). Intensity and rate both use ``total_flops`` (= flops + other_flops when
    that column is absent) so the point sits consistently against the ceilings. Rows without
    work, bytes or time are skipped and counted.
    """
    if ops is None or len(ops) == 0:
        return pd.DataFrame(columns=["name", "time_s", "intensity", "flop_per_s"]), 0
    total = _num(ops, "total_flops")
    if total.isna().all():
        total = _num(ops, "flops", 0.0).fillna(0) + _num(ops, "other_flops", 0.0).fillna(0)
    time_s = _num(ops, "self_time_s")
    nbytes = _num(ops, "bytes")
    ok = (total > 0) & (time_s > 0) & (nbytes > 0)
    pts = pd.DataFrame({
        "name": ops["name"].astype(str) if "name" in ops else "op",
        "time_s": time_s,
        "intensity": total / nbytes,
        "flop_per_s": total / time_s,
    })[ok]
    pts = pts.sort_values("time_s", ascending=False, kind="stable").reset_index(drop=True)
    return pts, int((~ok).sum())


_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
_OTHER = "#b0b0b0"
_PHASE_COLORS = ["#ffbf00", "#00a0a0", "#8000c0", "#606060"]


def _place_labels(fig, ax, items, avoid=()) -> None:
    """Annotate points without overlapping: try offsets around each point, keep the first
    whose box hits neither an earlier label nor the axes edge. ``items``: (x, y, text, color)."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()

    def extent(t):  # the text alone (an Annotation's own extent includes its leader line)
        if hasattr(t, "update_positions"):
            t.update_positions(renderer)
        return Text.get_window_extent(t, renderer).padded(3)

    placed = [extent(a) for a in avoid]
    ax_box = ax.get_window_extent(renderer)
    offsets = [(10, 8), (10, -14), (-10, 8), (-10, -14), (14, 22), (-14, 22), (14, -28), (-14, -28),
               (30, 0), (-30, 0), (0, 34), (0, -38)]
    for x, y, text, color in items:
        ann = None
        for dx, dy in offsets:
            if ann is not None:
                ann.remove()
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8,
                              color=color, ha="left" if dx >= 0 else "right", va="center", zorder=9,
                              arrowprops=dict(arrowstyle="-", color=color, lw=0.6, shrinkA=0, shrinkB=3),
                              bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
            box = extent(ann)
            inside = (box.x0 >= ax_box.x0 and box.x1 <= ax_box.x1 and box.y0 >= ax_box.y0 and box.y1 <= ax_box.y1)
            if inside and not any(box.overlaps(p) for p in placed):
                break
        placed.append(extent(ann))


@dataclass
class Star:
    """A whole-run or per-phase point: intensity and rate of all counted FLOPs over the un-profiled p50."""

    label: str
    x: float
    y: float
    time_s: float
    utilization: float | None
    color: str


def model_point(summary: dict) -> dict:
    """The whole-model roofline point of a run: ``{"total_flops", "flops", "bytes", "time_s",
    "utilization"}``, time = the un-profiled p50 and utilization = ``summary["utilization"]`` so the
    star's legend shows the summary's own figure."""
    s = summary or {}
    return {"total_flops": (s.get("flops") or 0) + (s.get("other_flops") or 0), "flops": s.get("flops"),
            "bytes": s.get("bytes") or 0, "time_s": (s.get("latency_s") or {}).get("p50") or 0,
            "utilization": s.get("utilization")}


def _star(label: str, p: dict, color: str, pf: float | None) -> Star | None:
    tf, nbytes, t = (float(p.get(k) or 0) for k in ("total_flops", "bytes", "time_s"))
    if not (tf > 0 and nbytes > 0 and t > 0):
        return None
    util = p.get("utilization")
    if util is None and pf:
        util = float(p.get("flops") if p.get("flops") is not None else tf) / t / pf
    return Star(label, tf / nbytes, tf / t, t, util, color)


def _stars(model: dict, phases: dict | None, pf: float | None) -> list[Star]:
    """The whole model, then one star per phase when there is more than one."""
    out = [_star("whole model", model, "#d62728", pf)]
    if phases and len(phases) > 1:
        out += [_star(str(name), phase_point(p), _PHASE_COLORS[i % len(_PHASE_COLORS)], pf)
                for i, (name, p) in enumerate(phases.items())]
    return [s for s in out if s is not None]


def _bandwidths(peak: "Peak | None") -> tuple[list[tuple[str, float]], bool]:
    """``([(level, B/s)], calibrated_caches)``: one bandwidth ceiling per memory level, fastest first.
    ``peak.cache_bytes_per_s`` (``{"L1": B/s, ..., "DRAM": B/s}``) when the peak has it, else DRAM alone
    (``peak.bytes_per_s``)."""
    if peak is None:
        return [], False
    levels = {str(k): float(v) for k, v in (getattr(peak, "cache_bytes_per_s", None) or {}).items() if v}
    if set(levels) - {"DRAM"}:  # a GPU's table bandwidth alone (DRAM) is no calibrated cache level
        if "DRAM" not in levels and peak.bytes_per_s:
            levels["DRAM"] = float(peak.bytes_per_s)
        return sorted(levels.items(), key=lambda kv: -kv[1]), True
    return ([("DRAM", float(peak.bytes_per_s))] if peak.bytes_per_s else []), False


def _frame(ax, pts: pd.DataFrame, stars: list[Star], pf: float | None, bws: list[tuple[str, float]]):
    """Log axes spanning the points, the stars and the ridge points; returns ``(x_lo, x_hi, y_lo, y_hi)``."""
    from matplotlib.ticker import LogLocator, NullFormatter

    xs = list(pts["intensity"]) + [s.x for s in stars] + ([pf / b for _, b in bws] if pf else [])
    ys = list(pts["flop_per_s"]) + [s.y for s in stars]
    xs = xs or [1.0]
    ys = ys or [pf / 100 if pf else 1e9]  # nothing measured to plot: frame the ceilings alone
    x_lo, x_hi = _span(min(xs) / 4, max(xs) * 4)
    y_lo, y_hi = _span(min(ys) / 4, max(ys + ([pf] if pf else [])) * 3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("arithmetic intensity (FLOP/byte, all counted FLOPs)")
    ax.set_ylabel("achieved FLOP/s (2×MACs + other FLOPs)")
    for axis, fmt in ((ax.xaxis, _plain_formatter()), (ax.yaxis, _si_formatter("FLOP/s"))):
        axis.set_major_locator(LogLocator(base=10))
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", ls="-", lw=0.4, color="#dddddd")
    ax.grid(True, which="minor", ls="-", lw=0.2, color="#f2f2f2")
    return x_lo, x_hi, y_lo, y_hi


_LABEL_BOX = dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85)


def _slope_label(ax, text: str, x_lo: float, x_end: float, b: float, frac: float):
    """``text`` along the line FLOP/s = x × b, ``frac`` of the way (log space) from ``x_lo`` to ``x_end``."""
    xm = x_lo * (x_end / x_lo) ** frac
    p0 = ax.transData.transform((xm, xm * b))
    p1 = ax.transData.transform((xm * 2, xm * 2 * b))
    angle = math.degrees(math.atan2(p1[1] - p0[1], p1[0] - p0[0]))
    return ax.annotate(text, (xm, xm * b), xytext=(0, 4), textcoords="offset points", rotation=angle,
                       rotation_mode="anchor", ha="left", va="bottom", fontsize=8.5, color="#222222", zorder=9,
                       bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))


def _draw_ceilings(ax, peak: "Peak | None", frame, bws: list[tuple[str, float]], calibrated_caches: bool):
    """Compute ceiling, one bandwidth ceiling per memory level and the DRAM ridge point.
    Returns ``(legend handles, texts the point labels must avoid)``."""
    import numpy as np
    from matplotlib.lines import Line2D

    x_lo, x_hi, y_lo, _ = frame
    pf = peak.flop_per_s if peak is not None else None
    handles, avoid = [], []
    if not (pf or bws):
        return handles, avoid
    x = np.logspace(math.log10(x_lo), math.log10(x_hi), 200)
    for i, (level, b) in enumerate(bws):
        dram = level == "DRAM"
        roof = np.minimum(x * b, pf) if pf else x * b
        ax.plot(x, roof, color="#333333", lw=2.0 if dram else 1.1, ls="-" if dram else "--", zorder=2)
        src = (peak.bytes_source or peak.source) if dram and not calibrated_caches else "calibrated"
        x_end = min(pf / b, x_hi) if pf else x_hi
        avoid.append(_slope_label(ax, f"{level} {si(b, 'B/s')} ({src})", x_lo, x_end, b, 0.3 if dram else 0.12))
    if pf:
        if not bws:
            ax.plot([x_lo, x_hi], [pf, pf], color="#333333", lw=2.0, zorder=2)
        avoid.append(ax.text(x_hi / 1.15, pf * 1.15, peak.compute_label(), ha="right", va="bottom", fontsize=9,
                             color="#222222", zorder=9, bbox=_LABEL_BOX))
    parts = (["compute"] if pf else []) + (["DRAM"] if "DRAM" in dict(bws) else [])
    handles.append(Line2D([], [], color="#333333", lw=2, label="device ceilings: " + ", ".join(parts)))
    if calibrated_caches:
        handles.append(Line2D([], [], color="#333333", lw=1.1, ls="--",
                              label="cache ceilings: " + ", ".join(lv for lv, _ in bws if lv != "DRAM")))
    else:
        handles.append(Line2D([], [], color="none", label="cache ceilings not calibrated"))
    dram = dict(bws).get("DRAM")
    if pf and dram:
        avoid.append(_ridge(ax, pf, dram, x_lo, x_hi, y_lo))
    return handles, avoid


def _ridge(ax, pf: float, b: float, x_lo: float, x_hi: float, y_lo: float):
    ridge = pf / b
    ax.axvline(ridge, color="#888888", ls=":", lw=1, zorder=1)
    ax.plot([ridge], [pf], marker="o", color="#333333", ms=5, zorder=3)
    frac = math.log(ridge / x_lo) / math.log(x_hi / x_lo)
    ha = "right" if frac > 0.7 else ("left" if frac < 0.3 else "center")
    text = {"right": f"DRAM ridge {ridge:.3g} FLOP/B\n← memory-bound | compute-bound",
            "left": f"DRAM ridge {ridge:.3g} FLOP/B\nmemory-bound | compute-bound →",
            "center": f"DRAM ridge {ridge:.3g} FLOP/B\n← memory-bound | compute-bound →"}[ha]
    return ax.text(ridge, y_lo * 1.15, text, fontsize=8, color="#555555", ha=ha, va="bottom", zorder=9,
                   bbox=_LABEL_BOX)


def _draw_ops(ax, pts: pd.DataFrame, hot: pd.Series) -> tuple[list, list]:
    """The (op, shape) dots: area ∝ profiled time, coloured by op name; ``hot`` ones (above a
    ceiling) ringed in red. Returns ``(legend handles, label items)``."""
    import numpy as np
    from matplotlib.lines import Line2D

    if not len(pts):
        return [], []
    total_t = float(pts["time_s"].sum())
    by_name = pts.groupby("name")["time_s"].agg(["sum", "count"]).sort_values("sum", ascending=False)
    colored = list(by_name.index[: len(_PALETTE)])
    color_of = {n: _PALETTE[i] for i, n in enumerate(colored)}
    colors = np.array([color_of.get(n, _OTHER) for n in pts["name"]])
    sizes = (12 + 588 * pts["time_s"] / float(pts["time_s"].max())).to_numpy()
    order = np.argsort(-pts["time_s"].to_numpy())  # big dots first, small ones on top
    x, y = pts["intensity"].to_numpy(), pts["flop_per_s"].to_numpy()
    ax.scatter(x[order], y[order], s=sizes[order], c=list(colors[order]), alpha=0.6, edgecolor="#333333",
               linewidth=0.4, zorder=4)
    if hot.any():
        ax.scatter(x[hot.to_numpy()], y[hot.to_numpy()], s=sizes[hot.to_numpy()] * 1.6 + 60, facecolors="none",
                   edgecolors="#e00000", linewidth=1.8, zorder=5)
    handles = []
    for n in colored:
        cnt = int(by_name.loc[n, "count"])
        handles.append(Line2D([], [], ls="", marker="o", color=color_of[n], alpha=0.7, ms=8,
                              label=f"{_short_op(n)}: {100 * by_name.loc[n, 'sum'] / total_t:.0f}% of op time"
                                    + (f" ({cnt} shapes)" if cnt > 1 else "")))
    rest = by_name.iloc[len(colored):]
    if len(rest):
        handles.append(Line2D([], [], ls="", marker="o", color=_OTHER, alpha=0.7, ms=8,
                              label=f"{len(rest)} other ops: {100 * rest['sum'].sum() / total_t:.0f}%"))
    labels = [(r["intensity"], r["flop_per_s"], f"{_short_op(r['name'])} {seconds(r['time_s'])}", "#222222")
              for _, r in pts.head(LABEL_TOP_OPS).iterrows()]
    return handles, labels


def _draw_stars(ax, stars: list[Star], hot_run: bool, pf: float | None) -> tuple[list, list]:
    """The whole model (and each phase): legend entries name the time they use and the utilization
    (the summary's own figure)."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for i, st in enumerate(stars):
        ax.scatter([st.x], [st.y], marker="*", s=340 if i == 0 else 260, color=st.color, edgecolor="black",
                   linewidth=0.8, zorder=8)
        hot = (hot_run and i == 0) or bool(pf and st.y > pf)
        if hot:
            ax.scatter([st.x], [st.y], s=900, facecolors="none", edgecolors="#e00000", linewidth=2, zorder=8)
        util = (f"\nutilization {percent(st.utilization)} (2×MAC FLOPs / p50 / peak)"
                if st.utilization is not None else "")
        handles.append(Line2D([], [], ls="", marker="*", color=st.color, markeredgecolor="black", ms=14,
                              label=f"{st.label}: {si(st.y, 'FLOP/s')} all FLOPs / un-profiled p50 "
                                    f"{seconds(st.time_s)}{util}"))
        labels.append((st.x, st.y, st.label, "#a01010" if i == 0 else st.color))
    return handles, labels


def _hot_ops(pts: pd.DataFrame, exceeded: list[dict] | None, pf: float | None) -> pd.Series:
    """Dots above the compute ceiling, and the dots of each op ``summary["peak_exceeded"]`` names
    that are above that entry's ceiling (all its dots when none is alone: the op exceeds as a sum)."""
    hot = pts["flop_per_s"] > pf if pf else pd.Series(False, index=pts.index)
    for e in exceeded or []:
        if e.get("what") != "op":
            continue
        mine = pts["name"] == str(e.get("name"))
        ceiling = e.get("ceiling_flop_per_s")
        above = mine & (pts["flop_per_s"] > float(ceiling)) if ceiling else mine
        hot |= above if above.any() else mine
    return hot


def _exceeded_note(exceeded: list[dict] | None, peak: "Peak | None", any_hot: bool) -> str:
    if not any_hot:
        return ""
    sources = sorted({str(e.get("source")) for e in exceeded or [] if e.get("source")}) or [
        peak.source if peak is not None else "unknown"]
    return f"red ring: above the {'/'.join(sources)} ceiling: the ceiling is wrong, not the result"


@dataclass(frozen=True)
class RooflinePicture:
    """What :func:`roofline_png` drew, and where: ``points`` (name, intensity FLOP/B, FLOP/s, time s) in the
    order of :func:`roofline_points`, ``stars`` (the whole model, then each phase), ``ceilings``
    (``("compute", FLOP/s)`` then ``(level, B/s)`` fastest first), the legend's labels, the red note
    (``""`` when nothing is above a ceiling) and which points are ringed (``hot``, per point)."""

    path: Path
    title: str
    points: tuple[tuple[str, float, float, float], ...]
    stars: tuple[Star, ...]
    ceilings: tuple[tuple[str, float], ...]
    legend: tuple[str, ...]
    note: str
    hot: tuple[bool, ...]


def roofline_png(path: str | Path, ops: pd.DataFrame, peak: "Peak", model: dict, title: str, *,
                 phases: dict | None = None, exceeded: list[dict] | None = None,
                 kernels: pd.DataFrame | None = None) -> RooflinePicture:
    """Draw ``roofline.png`` (see the module docstring); returns what was drawn (:class:`RooflinePicture`).

    ``ops``: rows with ``name``, ``total_flops`` (or ``flops`` + ``other_flops``), ``bytes``,
    ``self_time_s`` (profiled). ``model``: ``{"total_flops", "bytes", "time_s"}`` for the whole
    forward at the un-profiled p50, optionally ``flops`` and ``utilization`` (see :func:`model_point`).
    ``peak``: a :class:`harness.hardware.Peak` (with ``cache_bytes_per_s`` when calibrated).
    ``phases``: ``summary["phases"]`` (a star each when more than one). ``exceeded``:
    ``summary["peak_exceeded"]`` (those points get a red ring and a note). ``kernels``: a compiled run's
    kernels.csv: its kernels are drawn instead of the ops, beside their ops eager
    (:mod:`harness.report.roofline_kernels`).
    """
    from .roofline_kernels import draw_kernels, frame_points, kernel_points

    kpts = kernel_points(kernels) if kernels is not None and len(kernels) and "eager_bytes" in kernels else None
    pts, skipped = roofline_points(ops) if kpts is None else (frame_points(kpts), 0)
    pf = peak.flop_per_s if peak is not None else None
    bws, calibrated_caches = _bandwidths(peak)
    stars = _stars(model, phases, pf)
    fig = new_figure(11.0, 6.2)
    ax = fig.add_axes([0.105, 0.1, 0.565, 0.78])
    frame = _frame(ax, pts, stars, pf, bws)
    handles, avoid = _draw_ceilings(ax, peak, frame, bws, calibrated_caches)
    hot = _hot_ops(pts, exceeded, pf)
    op_handles, op_labels = _draw_ops(ax, pts, hot) if kpts is None else draw_kernels(ax, kpts)
    hot_run = any(e.get("what") == "run" for e in exceeded or [])
    star_handles, star_labels = _draw_stars(ax, stars, hot_run, pf)
    any_hot = bool(hot.any()) or hot_run or any(pf and s.y > pf for s in stars)
    head = f"{title}\n{_subtitle(pts, skipped, pf, bws)}"
    fig.suptitle(head, fontsize=10, x=0.5, y=0.985)
    legend = handles + op_handles + star_handles
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              fontsize=8.5, frameon=False, title="legend", title_fontsize=8.5, alignment="left")
    note = _exceeded_note(exceeded, peak, any_hot)
    if note:
        ax.text(0.01, 0.99, note, transform=ax.transAxes, ha="left", va="top", fontsize=8.5, color="#c00000",
                zorder=10, bbox=_LABEL_BOX)
    if peak is not None and peak.note:
        fig.text(0.69, 0.1, _wrap(f"peak: {peak.note}", 56), fontsize=7, color="#555555", va="bottom")
    _place_labels(fig, ax, star_labels[:1] + op_labels + star_labels[1:], avoid)
    ceilings = ((("compute", pf),) if pf else ()) + tuple(bws)
    return RooflinePicture(save_png(fig, path), head, _point_tuples(pts), tuple(stars),
                           ceilings, tuple(h.get_label() for h in legend), note, tuple(hot.to_numpy().tolist()))


def _point_tuples(pts: pd.DataFrame) -> tuple[tuple[str, float, float, float], ...]:
    """``(name, intensity, flop_per_s, time_s)`` per plotted point."""
    cols = ["name", "intensity", "flop_per_s", "time_s"]
    return tuple((str(n), float(x), float(y), float(s)) for n, x, y, s in pts[cols].itertuples(index=False, name=None))


def _subtitle(pts: pd.DataFrame, skipped: int, pf: float | None, bws: list) -> str:
    sub = ("dots: (op, shape) at profiled self time, area ∝ time; stars: un-profiled p50" if len(pts)
           else "no op with counted work and time to plot")
    if skipped:
        sub += f"; {skipped} op{'s' if skipped != 1 else ''} without counted work, bytes or time not shown"
    if not pf:
        return "peak unknown: no compute ceiling; " + sub
    if not bws:
        return "memory bandwidth unknown: no bandwidth ceiling; " + sub
    return sub


def _span(lo: float, hi: float, decades: float = 2.0) -> tuple[float, float]:
    """Widen ``[lo, hi]`` (log scale) to at least ``decades`` decades so major ticks show."""
    have = math.log10(hi / lo)
    if have >= decades:
        return lo, hi
    pad = 10 ** ((decades - have) / 2)
    return lo / pad, hi * pad


def _wrap(text: str, width: int, max_lines: int = 12) -> str:
    import textwrap

    lines = textwrap.wrap(text, width)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1] + "…"
    return "\n".join(lines)


# --------------------------------------------------------------------------- modules

def _depths(df: pd.DataFrame) -> pd.Series:
    if "depth" in df:
        d = pd.to_numeric(df["depth"], errors="coerce")
        if not d.isna().any():
            return d.astype(int)
    return df["path"].astype(str).map(lambda p: 0 if p == "" else p.count(".") + 1)


def module_frontier(modules: pd.DataFrame, top: int = 15) -> tuple[pd.DataFrame, int, float]:
    """Modules that partition the model's time: ``(rows, depth, total_s)``.

    ``rows``: all modules at ``depth`` plus shallower ones without children, sorted by
    ``time_s`` descending; ``depth`` is the shallowest whose frontier has at least ``top``
    rows (or the deepest there is). ``total_s``: the root's time (path ``""``) when
    present, else the sum of the depth-1 modules.
    """
    df = modules.copy()
    df["path"] = df["path"].fillna("").astype(str)
    df["depth"] = _depths(df)
    df["time_s"] = _num(df, "time_s").fillna(0.0)
    root = df[df["depth"] == 0]
    total = float(root["time_s"].max()) if len(root) else float(df.loc[df["depth"] == 1, "time_s"].sum())
    body = df[df["depth"] > 0]
    if body.empty:
        return body.assign(depth=[]), 0, total
    paths = set(body["path"])
    has_child = {p: False for p in paths}
    for p in paths:
        if "." in p:
            parent = p.rsplit(".", 1)[0]
            if parent in has_child:
                has_child[parent] = True
    max_depth = int(body["depth"].max())
    chosen = max_depth
    for d in range(1, max_depth + 1):
        n = int(((body["depth"] == d) | ((body["depth"] < d) & ~body["path"].map(has_child))).sum())
        if n >= top:
            chosen = d
            break
    sel = (body["depth"] == chosen) | ((body["depth"] < chosen) & ~body["path"].map(has_child))
    rows = body[sel].sort_values("time_s", ascending=False, kind="stable").reset_index(drop=True)
    return rows, chosen, total


def _module_rate(r: pd.Series, exceeded: bool) -> str:
    """`` · 2.6% of peak FLOP/s`` for a module with multiply-add FLOPs (``flops`` > 0, or no
    ``flops`` column), else nothing: a module of pooling or norms is not at "0% of peak"."""
    util = num(r.get("utilization"))
    flops = num(r.get("flops")) if "flops" in r else None
    if util is None or ("flops" in r and not flops):
        return ""
    return f" · {100 * util:.1f}% of peak FLOP/s" + (" (above the ceiling: the ceiling is wrong)" if exceeded else "")


@dataclass(frozen=True)
class Bar:
    """One bar of time_by_module.png: its label (module, type and, with several phases, the phase),
    its profiled time and the text drawn beside it."""

    label: str
    value_s: float
    text: str
    phase: str | None = None

    @property
    def grey(self) -> bool:
        """The "other" and "outside these modules" bars (drawn grey)."""
        return self.label.startswith(("other: ", "outside "))


@dataclass(frozen=True)
class ModulePanel:
    """One panel of time_by_module.png: a phase's modules (``phase`` None: the only phase)."""

    phase: str | None
    depth: int
    n_modules: int
    total_s: float
    title: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class ModulePicture:
    """What :func:`time_by_module_png` drew, and where."""

    path: Path
    title: str
    xlabel: str
    panels: tuple[ModulePanel, ...]

    @property
    def labels(self) -> list[str]:
        return [b.label for p in self.panels for b in p.bars]


def module_panel(modules: pd.DataFrame, top: int, *, phase: str | None = None, word: str = "forward",
                 hot: set[str] = frozenset()) -> ModulePanel:
    """The bars of one phase's modules (``modules``: that phase's rows): the frontier
    (:func:`module_frontier`) without its modules of no time, an "other" bar past ``top``, an
    "outside these modules" bar for the parents' own ops; with ``phase`` each label ends with `` · <phase>``."""
    frontier, depth, total = module_frontier(modules, top)
    rows = frontier[frontier["time_s"] > 0]
    shown = rows.head(top if len(rows) <= top else top - 1)
    tail = f" · {phase}" if phase else ""
    bars = []
    for _, r in shown.iterrows():
        typ = str(r.get("type") or "")
        label = f"{r['path']}" + (f"  ({typ})" if typ and typ != "nan" else "") + tail
        bars.append((label, float(r["time_s"]), _module_rate(r, str(r["path"]) in hot)))
    rest = rows.iloc[len(shown):]
    if len(rest):
        bars.append((f"other: {len(rest)} smaller modules{tail}", float(rest["time_s"].sum()), ""))
    outside = total - float(rows["time_s"].sum())
    if total > 0 and outside > 0.005 * total:
        bars.append((f"outside these modules (parents' own ops){tail}", outside, ""))
    denom = total if total > 0 else (sum(b[1] for b in bars) or 1.0)
    drawn = tuple(Bar(lab, v, f"{seconds(v)} · {100 * v / denom:.1f}% of time{extra}", phase) for lab, v, extra in bars)
    title = _panel_title(phase, word, depth, total, len(rows), len(frontier) - len(rows),
                         bool(drawn) and drawn[-1].label.startswith("outside "))
    return ModulePanel(phase, depth, len(rows), total, title, drawn)


def _panel_title(phase: str | None, word: str, depth: int, total: float, n: int, idle: int, outside: bool) -> str:
    """What a panel shows and that its bars add up to its phase's profiled op time."""
    where = f"phase {phase}: " if phase else ""
    parts = f"{n} modules at depth {depth} (+ shallower leaf modules)" + (" + time outside them" if outside else "")
    text = (f"{where}{seconds(total)} profiled op time per {word} = {parts}, nothing counted twice" if n else
            f"{where}{seconds(total)} profiled op time per {word}, none of it inside the modules at depth {depth}")
    return text + (f"; {idle} modules with no time in it not drawn" if idle else "")


def module_panels(modules: pd.DataFrame | None, top: int = 15, *, phases: list[str] | None = None,
                  word: str = "forward", exceeded: list[dict] | None = None) -> list[ModulePanel]:
    """One :class:`ModulePanel` per phase when ``modules`` has a ``phase`` column and there are
    several ``phases`` (default: the column's values in order), each with ``ceil(top / phases)``
    bars (at least 5); else one panel of the whole table."""
    df = modules if modules is not None else pd.DataFrame(columns=["path"])
    hot = {str(e.get("name")) for e in exceeded or [] if e.get("what") == "module"}
    if "phase" in df.columns and phases is None:
        phases = [str(p) for p in dict.fromkeys(df["phase"].dropna().astype(str)) if p]
    if "phase" not in df.columns or not phases or len(phases) < 2:
        return [module_panel(df, top, word=word, hot=hot)]
    each = max(5, math.ceil(top / len(phases)))
    return [module_panel(df[df["phase"].astype(str) == p], each, phase=p, word=word, hot=hot) for p in phases]


def _draw_panel(ax, panel: ModulePanel, vmax: float, several: bool) -> None:
    """Horizontal bars, largest on top, each with its time, share of the panel's total and rate."""
    bars = panel.bars[::-1]
    if not bars:
        ax.text(0.5, 0.5, "no module times", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    else:
        ypos = list(range(len(bars)))
        ax.barh(ypos, [b.value_s for b in bars], color=["#9e9e9e" if b.grey else "#1f77b4" for b in bars],
                height=0.7)
        ax.set_yticks(ypos)
        ax.set_yticklabels([b.label for b in bars], fontsize=8)
        for y, b in zip(ypos, bars):
            ax.text(b.value_s + vmax * 0.01, y, b.text, va="center", fontsize=8)
    if several:
        ax.set_ylabel(f"phase {panel.phase}", fontsize=9.5, fontweight="bold")
    ax.set_title(_wrap(panel.title, 110), fontsize=8.5, loc="left")
    ax.grid(True, axis="x", lw=0.4, color="#dddddd")
    ax.set_axisbelow(True)


def time_by_module_png(path: str | Path, modules: pd.DataFrame, title: str, top: int = 15, *,
                       exceeded: list[dict] | None = None, phases: list[str] | None = None,
                       word: str = "forward") -> ModulePicture:
    """Draw ``time_by_module.png`` (see the module docstring); returns what was drawn (:class:`ModulePicture`).

    ``modules``: rows with ``path``, ``type``, ``depth``, ``time_s`` (profiled) and optionally
    ``phase``, ``flops``, ``utilization``. With a ``phase`` column and several ``phases``, one
    panel per phase on a shared time axis, each labelled with its phase. ``exceeded``:
    ``summary["peak_exceeded"]``; a module it names is flagged beside its utilization. ``word``:
    what one iteration is called (forward, generation, training step).
    """
    from matplotlib.ticker import FuncFormatter

    panels = module_panels(modules, top, phases=phases, word=word, exceeded=exceeded)
    sizes = [max(len(p.bars), 1) + 2.0 for p in panels]
    fig = new_figure(10.5, max(2.8, 0.9 + 0.36 * sum(sizes)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": sizes})[:, 0]
    vmax = max([b.value_s for p in panels for b in p.bars] or [1.0]) or 1.0
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel, vmax, len(panels) > 1)
    axes[0].set_xlim(0, vmax * 1.8)
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda v, _p: "0" if v == 0 else seconds(v)))
    xlabel = f"profiled op time per {word} (a module's time includes its children's)"
    axes[-1].set_xlabel(xlabel)
    head = f"{title}\ntime by module per {word}" + (", one panel per phase" if len(panels) > 1 else "")
    fig.suptitle(head, fontsize=10)
    fig.tight_layout()
    return ModulePicture(save_png(fig, path), head, xlabel, tuple(panels))
