"""A compiled run's roofline points: each kernel (kernels.csv) twice, as compiled and as its ops eager.

A kernel's filled square sits at its own intensity (its counted FLOPs over the bytes the kernel
moves) and achieved rate (counted FLOPs over its time); a hollow circle at the same rate marks
the intensity its fused ops had eagerly (the same FLOPs over the bytes the eager ops moved,
``eager_bytes``). A line joins the two: fusion moves points to the right.
"""
from __future__ import annotations

import pandas as pd

from ..core.units import seconds

KIND_COLORS = {"generated": "#d62728", "extern": "#1f77b4", "replay": "#9467bd"}


def kernel_points(kernels: pd.DataFrame) -> pd.DataFrame:
    """``name``, ``kind``, ``time_s``, ``intensity`` (compiled), ``eager_intensity``, ``flop_per_s`` of the
    kernels with counted work, bytes and time."""
    total = kernels["total_flops"].astype(float)
    ok = (total > 0) & (kernels["time_s"] > 0) & (kernels["bytes"] > 0)
    k = kernels[ok]
    pts = pd.DataFrame({"name": k["kernel"].astype(str), "kind": k["kind"], "time_s": k["time_s"].astype(float),
                        "intensity": total[ok] / k["bytes"].astype(float),
                        "eager_intensity": total[ok] / k["eager_bytes"].where(k["eager_bytes"] > 0).astype(float),
                        "flop_per_s": total[ok] / k["time_s"].astype(float)})
    return pts.sort_values("time_s", ascending=False, kind="stable").reset_index(drop=True)


def frame_points(pts: pd.DataFrame) -> pd.DataFrame:
    """Both markers' positions, for the axes' span."""
    eager = pts.dropna(subset=["eager_intensity"]).assign(intensity=lambda d: d["eager_intensity"])
    return pd.concat([pts, eager], ignore_index=True)[["name", "time_s", "intensity", "flop_per_s"]]


def draw_kernels(ax, pts: pd.DataFrame) -> tuple[list, list]:
    """Squares (compiled kernels, coloured by kind) and hollow circles (their ops eager), joined;
    returns ``(legend handles, label items)``."""
    from matplotlib.lines import Line2D

    if not len(pts):
        return [], []
    sizes = 20 + 400 * pts["time_s"] / float(pts["time_s"].max())
    for r, s in zip(pts.itertuples(), sizes):
        color = KIND_COLORS.get(r.kind, "#606060")
        if r.eager_intensity == r.eager_intensity:  # not NaN
            ax.plot([r.eager_intensity, r.intensity], [r.flop_per_s, r.flop_per_s], color=color, lw=0.8,
                    alpha=0.5, zorder=3)
            ax.scatter([r.eager_intensity], [r.flop_per_s], s=s, facecolors="none", edgecolors=color,
                       linewidth=1.0, zorder=4)
        ax.scatter([r.intensity], [r.flop_per_s], s=s, marker="s", c=color, alpha=0.7, edgecolor="#333333",
                   linewidth=0.4, zorder=5)
    total_t = float(pts["time_s"].sum())
    handles = [Line2D([], [], ls="", marker="s", color=KIND_COLORS.get(kind, "#606060"), alpha=0.7, ms=8,
                      label=f"compiled {kind} kernels: {100 * t / total_t:.0f}% of kernel time")
               for kind, t in pts.groupby("kind")["time_s"].sum().sort_values(ascending=False).items()]
    handles.append(Line2D([], [], ls="", marker="o", mfc="none", color="#333333", ms=8,
                          label="the same ops eager (bytes the eager ops moved)"))
    labels = [(r.intensity, r.flop_per_s, f"{_short(r.name)} {seconds(r.time_s)}", "#222222")
              for r in pts.head(6).itertuples()]
    return handles, labels


def _short(name: str, width: int = 30) -> str:
    name = name.split("cpp_fused_")[-1] if "cpp_fused_" in name else name
    return name if len(name) <= width else name[: width - 1] + "…"
