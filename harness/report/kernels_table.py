"""The kernel table of a compiled run (kernels.csv): the terminal's and report.html's, from the same cells.

A compiled run's time is in its kernels — generated (fused) ones and extern ones that stay aten
ops — not in dispatch-level ops, so that is the table a person reads first: each kernel with the
ops and modules it fused, its time per iteration, its share of kernel time, the work it does
(the sum of its fused ops' counted work), the bytes it moves (its own inputs and outputs), and
how close it came to its ceiling.
"""
from __future__ import annotations

import pandas as pd

from ..core.units import percent, seconds, si

HEADERS = ["kernel", "kind", "fused ops", "modules", "calls", "time", "share", "FLOP", "other FLOP", "moved",
           "achieved", "of peak"]
NAME_WIDTH, OPS_WIDTH, MODULES_WIDTH = 38, 34, 26


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _ops(text: object) -> str:
    """``aten::convolution;aten::relu`` -> ``convolution+relu``."""
    names = [n.removeprefix("aten::") for n in str(text or "").split(";") if n]
    return "+".join(dict.fromkeys(names))


def _modules(text: object) -> str:
    mods = [m for m in str(text or "").split(";") if m]
    return "" if not mods else mods[0] + (f" +{len(mods) - 1}" if len(mods) > 1 else "")


def _num(v: object) -> float | None:
    return None if v is None or pd.isna(v) else float(v)  # type: ignore[arg-type]


def _rate(r: pd.Series) -> tuple[str, str]:
    """Achieved FLOP/s of multiply-add work (of the FLOP/s ceiling), else B/s (of the bandwidth ceiling)."""
    if (_num(r.get("flops")) or 0) > 0:
        return si(_num(r.get("achieved_flop_per_s")), "FLOP/s"), percent(_num(r.get("utilization")))
    return si(_num(r.get("achieved_bytes_per_s")), "B/s"), percent(_num(r.get("bandwidth_utilization")))


def kernel_rows(kernels: pd.DataFrame, top: int | None = 10) -> list[list[str]]:
    """The ``top`` kernels by time (all when None), as text cells under :data:`HEADERS`."""
    df = kernels.sort_values("time_s", ascending=False, kind="stable")
    df = df if top is None else df.head(top)
    rows = []
    for _, r in df.iterrows():
        calls = _num(r.get("calls"))
        rate, of_peak = _rate(r)
        rows.append([_cut(str(r["kernel"]), NAME_WIDTH), str(r.get("kind", "")), _cut(_ops(r.get("fused_ops")), OPS_WIDTH),
                     _cut(_modules(r.get("modules")), MODULES_WIDTH), "" if calls is None else f"{calls:g}",
                     seconds(_num(r.get("time_s"))), percent(_num(r.get("time_share"))),
                     si(_num(r.get("flops")), "FLOP") if _num(r.get("flops")) else "—",
                     si(_num(r.get("other_flops")), "FLOP") if _num(r.get("other_flops")) else "—",
                     si(_num(r.get("bytes")), "B"), rate, of_peak])
    return rows


def render_top_kernels(kernels: pd.DataFrame, summary: dict, top: int = 10) -> str:
    """The terminal's kernel table of a compiled run."""
    from ..core.text import table
    from ..pipeline.workloads import word

    rows = kernel_rows(kernels, top)
    title = (f"Top {len(rows)} kernels of {len(kernels)} by time (per {word(summary)}; compiled: kernels.csv has "
             "every kernel with its fused nodes; ops.csv the aten ops the compiled code still calls)")
    legend = ("  fused ops / modules: what the kernel fused (first module, +N others); FLOP: its fused ops' counted "
              "work; moved: its own inputs and outputs; achieved: FLOP/s of multiply-add work, else B/s")
    return "\n".join([title, *table(HEADERS, rows, right=set(range(4, len(HEADERS)))), legend])
