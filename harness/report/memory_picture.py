"""``memory_timeline.png``: live bytes by category over one iteration, stacked, phases marked.

x: time from the iteration's start; y: live bytes (SI: kB, MB, GB), the categories of
:mod:`harness.memory.categories` stacked in their fixed order as steps (the value after each
allocator event holds until the next one); a dashed vertical line where each phase begins
(a run of decode steps is one ``decode`` region), and the peak marked with its total. Only
categories that hold bytes at some moment are drawn; the legend gives each one's bytes at the
peak. Returns what it drew (:class:`MemoryPicture`) so tests check the content, not pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.units import si
from .pictures import _si_formatter, new_figure, save_png

COLORS = {"parameters": "#4c72b0", "buffers": "#8172b3", "gradients": "#dd8452", "optimizer_state": "#c44e52",
          "activations": "#55a868", "temporaries": "#b3b3b3", "kv_cache": "#937860", "inputs": "#da8bc3",
          "outputs": "#64b5cd"}


@dataclass
class MemoryPicture:
    path: Path
    categories: list[str]        # drawn, bottom to top
    legend: list[str]
    boundaries: list[tuple[float, str]]
    peak_bytes: int
    peak_t_s: float


def memory_timeline_png(path: str | Path, table: pd.DataFrame, boundaries: list[tuple[float, str]], title: str,
                        ) -> MemoryPicture:
    """Draw memory.csv's ``table`` (``t_s, phase, category, bytes``) with the phase starts ``boundaries``."""
    from ..memory.timeline import peak, wide

    w = wide(table)
    pk = peak(table)
    drawn = [c for c in w.columns if w[c].max() > 0]
    fig = new_figure(9.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    x = w.index.to_numpy() * 1e3
    legend = [f"{c.replace('_', ' ')} ({si(pk.by_category[c], 'B')} at peak)" for c in drawn]
    if drawn:
        ax.stackplot(x, [w[c].to_numpy() for c in drawn], labels=legend, step="post",
                     colors=[COLORS.get(c, "#999999") for c in drawn], alpha=0.9, linewidth=0)
    top = float(w.sum(axis=1).max()) if len(w) else 0.0
    for t, name in boundaries:
        ax.axvline(t * 1e3, color="#333333", linestyle="--", linewidth=0.8)
        ax.text(t * 1e3, top * 1.02, f" {name}", fontsize=8, va="bottom", ha="left", rotation=0)
    ax.plot([pk.t_s * 1e3], [pk.bytes], marker="v", color="black", markersize=6, linestyle="none",
            label=f"peak {si(pk.bytes, 'B')} ({pk.phase})")
    ax.set_ylim(0, top * 1.12 if top else 1)
    ax.set_xlim(0, max(float(x.max()) if len(x) else 0.0, 1e-6))
    ax.yaxis.set_major_formatter(_si_formatter("B"))
    ax.set_xlabel("time from the iteration's start (ms, profiled)")
    ax.set_ylabel("live bytes")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    out = save_png(fig, path)
    return MemoryPicture(out, drawn, legend, list(boundaries), pk.bytes, pk.t_s)
