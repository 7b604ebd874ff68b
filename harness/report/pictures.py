"""The run's two pictures: ``roofline.png`` and ``time_by_module.png``.

matplotlib is imported inside the functions (importing harness stays fast) and used
through its object API on an Agg canvas - no pyplot, no global backend switch. Each
picture is rendered to bytes and written atomically.

**roofline.png** - log-log: x = arithmetic intensity (FLOP/byte), y = achieved FLOP/s.
Each op (row of ``ops``) is a dot whose *area* is proportional to its time; the top few
by time are labelled; the model as a whole is a star. The device's ceilings are drawn
when known: the compute peak (horizontal) and the memory bandwidth (slope 1:
FLOP/s = intensity × bytes/s), meeting at the ridge point. Labels carry the figure and
where it came from (table / derived / calibrated). With an unknown peak there are no
ceilings and the title says so.

**time_by_module.png** - horizontal bars of the top modules by time. Module times are
inclusive (a module's time contains its children's), so bars of a parent and its child
would count the same time twice. The chart therefore shows a *frontier*: all modules
at one depth ``d`` plus the shallower modules that have no children, which partition
the model's time. ``d`` is the shallowest depth whose frontier has at least ``top``
modules (or the deepest level there is): deep enough to be specific, shallow enough to
stay whole blocks. If the frontier is longer than ``top`` the rest is one "other" bar,
and time spent in a parent's own code outside its children is one "outside" bar, so
the bars add up to the model's time. The title names the depth.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..core.fsio import atomic_write_bytes
from ..core.units import seconds, si

if TYPE_CHECKING:  # pragma: no cover
    from ..hardware import Peak

DPI = 110
LABEL_TOP_OPS = 5
_SHORT = {"float64": "fp64", "float32": "fp32", "tfloat32": "tf32", "bfloat16": "bf16",
          "float16": "fp16", "float8": "fp8", "int8": "int8"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
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


def roofline_png(path: str | Path, ops: pd.DataFrame, peak: "Peak", model: dict, title: str) -> Path:
    """Draw ``roofline.png`` (see the module docstring) and return its path.

    ``ops``: rows with ``name``, ``total_flops`` (or ``flops`` + ``other_flops``), ``bytes``,
    ``self_time_s``. ``model``: ``{"total_flops", "bytes", "time_s"}`` for the whole forward.
    ``peak``: a :class:`harness.hardware.Peak`. Dots are coloured by op name (the op names
    with the most time get colours, the rest are grey) and the legend gives each name's share
    of the plotted op time; the top few dots by time are labelled.
    """
    import numpy as np
    from matplotlib.lines import Line2D

    pts, skipped = roofline_points(ops)
    fig = _figure(11.0, 6.2)
    ax = fig.add_axes([0.105, 0.1, 0.565, 0.78])

    m_flops, m_bytes, m_time = (float(model.get(k) or 0) for k in ("total_flops", "bytes", "time_s"))
    m_point = None
    if m_flops > 0 and m_bytes > 0 and m_time > 0:
        m_point = (m_flops / m_bytes, m_flops / m_time)

    pf = peak.flop_per_s if peak is not None else None
    pb = peak.bytes_per_s if peak is not None else None

    xs = list(pts["intensity"]) + ([m_point[0]] if m_point else [])
    ys = list(pts["flop_per_s"]) + ([m_point[1]] if m_point else [])
    if pf and pb:
        xs.append(pf / pb)
    if not xs:
        xs = [1.0]
    if not ys:  # nothing measured to plot: frame the ceilings alone
        ys = [pf / 100 if pf else 1e9]
    x_lo, x_hi = _span(min(xs) / 4, max(xs) * 4)
    y_lo, y_hi = _span(min(ys) / 4, max(ys + ([pf] if pf else [])) * 3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved FLOP/s")
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(_plain_formatter())
    ax.yaxis.set_major_formatter(_si_formatter("FLOP/s"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", ls="-", lw=0.4, color="#dddddd")
    ax.grid(True, which="minor", ls="-", lw=0.2, color="#f2f2f2")

    handles = []
    avoid = []
    # ceilings
    if pf or pb:
        x = np.logspace(math.log10(x_lo), math.log10(x_hi), 200)
        roof = np.full_like(x, np.inf)
        if pb:
            roof = np.minimum(roof, x * pb)
        if pf:
            roof = np.minimum(roof, pf)
        ax.plot(x, roof, color="#333333", lw=2.0, zorder=2)
        handles.append(Line2D([], [], color="#333333", lw=2, label="device ceilings"))
        if pf:
            avoid.append(ax.text(x_hi / 1.15, pf * 1.15, peak.compute_label(), ha="right", va="bottom",
                                 fontsize=9, color="#222222", zorder=9,
                                 bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85)))
        if pb:
            # along the sloped part, a third of the way (in log space) from the left edge to the ridge
            x_end = min(pf / pb, x_hi) if pf else x_hi
            xm = x_lo * (x_end / x_lo) ** 0.3
            p0 = ax.transData.transform((xm, xm * pb))
            p1 = ax.transData.transform((xm * 2, xm * 2 * pb))
            angle = math.degrees(math.atan2(p1[1] - p0[1], p1[0] - p0[0]))
            avoid.append(ax.annotate(f"{si(pb, 'B/s')} memory ({peak.bytes_source or peak.source})",
                                     (xm, xm * pb), xytext=(0, 5), textcoords="offset points", rotation=angle,
                                     rotation_mode="anchor", ha="left", va="bottom", fontsize=9,
                                     color="#222222", zorder=9,
                                     bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7)))
        if pf and pb:
            ridge = pf / pb
            ax.axvline(ridge, color="#888888", ls=":", lw=1, zorder=1)
            ax.plot([ridge], [pf], marker="o", color="#333333", ms=5, zorder=3)
            frac = math.log(ridge / x_lo) / math.log(x_hi / x_lo)
            ha = "right" if frac > 0.7 else ("left" if frac < 0.3 else "center")
            text = {"right": f"ridge {ridge:.3g} FLOP/B\n← memory-bound | compute-bound",
                    "left": f"ridge {ridge:.3g} FLOP/B\nmemory-bound | compute-bound →",
                    "center": f"ridge {ridge:.3g} FLOP/B\n← memory-bound | compute-bound →"}[ha]
            avoid.append(ax.text(ridge, y_lo * 1.15, text, fontsize=8, color="#555555", ha=ha, va="bottom",
                                 zorder=9, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8)))

    # ops: area proportional to time, coloured by op name
    label_items = []
    if len(pts):
        tmax = float(pts["time_s"].max())
        total_t = float(pts["time_s"].sum())
        by_name = pts.groupby("name")["time_s"].agg(["sum", "count"]).sort_values("sum", ascending=False)
        colored = list(by_name.index[: len(_PALETTE)])
        color_of = {n: _PALETTE[i] for i, n in enumerate(colored)}
        colors = [color_of.get(n, _OTHER) for n in pts["name"]]
        sizes = 12 + 588 * pts["time_s"] / tmax
        order = np.argsort(-pts["time_s"].to_numpy())  # big dots first, small ones on top
        ax.scatter(pts["intensity"].to_numpy()[order], pts["flop_per_s"].to_numpy()[order],
                   s=sizes.to_numpy()[order], c=[colors[i] for i in order], alpha=0.6,
                   edgecolor="#333333", linewidth=0.4, zorder=4)
        for n in colored:
            share = 100 * by_name.loc[n, "sum"] / total_t
            cnt = int(by_name.loc[n, "count"])
            handles.append(Line2D([], [], ls="", marker="o", color=color_of[n], alpha=0.7, ms=8,
                                  label=f"{_short_op(n)}: {share:.0f}% of op time"
                                        + (f" ({cnt} shapes)" if cnt > 1 else "")))
        rest = by_name.iloc[len(colored):]
        if len(rest):
            handles.append(Line2D([], [], ls="", marker="o", color=_OTHER, alpha=0.7, ms=8,
                                  label=f"{len(rest)} other ops: {100 * rest['sum'].sum() / total_t:.0f}%"))
        for _, r in pts.head(LABEL_TOP_OPS).iterrows():
            label_items.append((r["intensity"], r["flop_per_s"],
                                f"{_short_op(r['name'])} {seconds(r['time_s'])}",
                                "#222222"))
    if m_point:
        ax.scatter([m_point[0]], [m_point[1]], marker="*", s=340, color="#d62728", edgecolor="black",
                   linewidth=0.8, zorder=8)
        util = f" = {100 * m_point[1] / pf:.1f}% of peak" if pf else ""
        handles.append(Line2D([], [], ls="", marker="*", color="#d62728", markeredgecolor="black", ms=14,
                              label=f"whole model: {si(m_point[1], 'FLOP/s')}{util}"))
        label_items.insert(0, (m_point[0], m_point[1], "whole model", "#a01010"))

    sub = "ops: dot area ∝ time, top ones labelled" if len(pts) else "no op with counted work and time to plot"
    if skipped:
        sub += f"; {skipped} op{'s' if skipped != 1 else ''} without counted work, bytes or time not shown"
    if not pf:
        sub = "peak unknown: no ceilings drawn; " + sub
    elif not pb:
        sub = "memory bandwidth unknown: no bandwidth ceiling; " + sub
    fig.suptitle(f"{title}\n{sub}", fontsize=10, x=0.5, y=0.985)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8.5, frameon=False,
              title="legend", title_fontsize=8.5, alignment="left")
    if peak is not None and peak.note:
        fig.text(0.69, 0.1, _wrap(f"peak: {peak.note}", 56), fontsize=7, color="#555555", va="bottom")
    _place_labels(fig, ax, label_items, avoid)
    return _save(fig, path)


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


def time_by_module_png(path: str | Path, modules: pd.DataFrame, title: str, top: int = 15) -> Path:
    """Draw ``time_by_module.png`` (see the module docstring) and return its path.

    ``modules``: rows with ``path``, ``type``, ``depth``, ``time_s`` and optionally
    ``total_flops``, ``achieved_flop_per_s``, ``utilization``.
    """
    rows, depth, total = module_frontier(modules if modules is not None else pd.DataFrame(columns=["path"]), top)
    n_frontier = len(rows)
    shown = rows.head(top if n_frontier <= top else top - 1)
    bars: list[tuple[str, float, str]] = []
    for _, r in shown.iterrows():
        typ = str(r.get("type") or "")
        label = f"{r['path']}" + (f"  ({typ})" if typ and typ != "nan" else "")
        util = r.get("utilization")
        extra = ""
        if util is not None and not (isinstance(util, float) and math.isnan(util)):
            extra = f" · {100 * float(util):.1f}% of peak FLOP/s"
        bars.append((label, float(r["time_s"]), extra))
    rest = rows.iloc[len(shown):]
    if len(rest):
        bars.append((f"other: {len(rest)} smaller modules", float(rest["time_s"].sum()), ""))
    covered = float(rows["time_s"].sum())
    outside = total - covered
    if total > 0 and outside > 0.005 * total:
        bars.append(("outside these modules (parents' own ops)", outside, ""))
    denom = total if total > 0 else (covered or 1.0)

    height = max(2.8, 0.9 + 0.36 * max(len(bars), 1))
    fig = _figure(9.5, height)
    ax = fig.add_subplot(1, 1, 1)
    if bars:
        labels = [b[0] for b in bars][::-1]
        vals = [b[1] for b in bars][::-1]
        colors = ["#9e9e9e" if b[0].startswith(("other: ", "outside ")) else "#1f77b4" for b in bars][::-1]
        ypos = range(len(bars))
        ax.barh(list(ypos), vals, color=colors, height=0.7)
        ax.set_yticks(list(ypos))
        ax.set_yticklabels(labels, fontsize=8)
        vmax = max(vals) if vals else 1.0
        for y, (_, v, extra) in zip(ypos, bars[::-1]):
            ax.text(v + vmax * 0.01, y, f"{seconds(v)} · {100 * v / denom:.1f}% of time{extra}", va="center",
                    fontsize=8)
        ax.set_xlim(0, vmax * 1.8)
    else:
        ax.text(0.5, 0.5, "no module times", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: "0" if v == 0 else seconds(v)))
    ax.set_xlabel("time per forward (a module's time includes its children's)")
    ax.grid(True, axis="x", lw=0.4, color="#dddddd")
    ax.set_axisbelow(True)
    parts = f"{n_frontier} modules" + (" + time outside them" if bars and bars[-1][0].startswith("outside ") else "")
    what = (f"time by module at depth {depth} (+ shallower leaf modules): {parts} make up "
            f"the {seconds(total)} forward, nothing counted twice")
    ax.set_title(f"{title}\n{what}", fontsize=9.5)
    fig.tight_layout()
    return _save(fig, path)
