"""What an operator row shows, decided once for the terminal, report.html and TensorBoard.

Rows (``ops.csv``) have a ``kind``: ``op`` (dispatch level: what the model called; time =
its self time including the kernels it dispatched; work = what harness counted for it),
``label``/``wrapper`` (profiler ranges such as ``ProfilerStep*``, ``model_inference``: no
work of their own) and ``nested`` (kernels inside an op: their time and work are already in
that op's row). The default view is dispatch-level ops only.

Cells use three distinct "no number" marks, never a misleading 0:

* ``uncounted`` - an op without a formula (``counted`` False): its work is unknown;
* ``—`` - counted, and none of that kind of work (e.g. no multiply-add FLOPs in max_pool2d,
  whose comparisons are other FLOPs);
* ``""`` (blank) - not applicable: labels and nested rows.

The rate of an op with multiply-add FLOPs is FLOP/s = ``flops / self_time_s`` against the peak
FLOP/s (``utilization``); an op without any is rated by the bytes it moves, B/s =
``bytes / self_time_s`` against the memory bandwidth (``bandwidth_utilization``). A bandwidth
utilization above 100 % (``cache_resident`` in ops.csv) is kept as measured and marked
:data:`CACHE_MARK`: the data moved faster than main memory allows, so it sat in cache
(:data:`CACHE_LEGEND` says so under every table that shows the mark).
Memory is ``device_memory_usage_bytes`` on CUDA runs, else ``cpu_memory_usage_bytes``: allocated
minus freed inside the op and the kernels it
dispatched (the profiler's figure; negative when the op frees more than it allocates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # pandas is imported by the callers' DataFrames; the CLI parser stays light
    import pandas as pd

from ..core.units import percent, si

UNCOUNTED = "uncounted"
NONE = "—"
CACHE_MARK = " (cache)"
CACHE_LEGEND = "(cache): above DRAM bandwidth: the data sat in cache"


def num(v: Any) -> float | None:
    """``v`` as a float, or None when missing / not a number."""
    if v is None or isinstance(v, str):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def dispatch_level(ops: pd.DataFrame | None, all_rows: bool = False) -> pd.DataFrame:
    """The rows an operator table lists: ``kind == "op"`` (all rows with ``all_rows``)."""
    if ops is None:
        import pandas as pd

        return pd.DataFrame(columns=["name"])
    if all_rows or "kind" not in ops.columns:
        return ops
    return ops[ops["kind"].astype(str) == "op"]


def calls_column(ops: pd.DataFrame) -> tuple[str, bool]:
    """``(column, exact)``: ``dispatch_calls`` (calls at the dispatch level) when the run has it,
    else the profiler's ``calls``, which also counts the op's nested calls (``exact`` False)."""
    if "dispatch_calls" in ops.columns:
        return "dispatch_calls", True
    return "calls", False


@dataclass(frozen=True)
class OpCells:
    """One operator row, formatted (SI, units in every cell)."""

    flops: str          # multiply-add FLOPs (2 x MACs)
    other_flops: str    # other arithmetic
    bytes: str          # bytes moved
    flop_per_s: str     # flops / self time
    utilization: str    # % of peak FLOP/s
    bytes_per_s: str    # bytes / self time
    bandwidth_utilization: str  # % of peak B/s
    net_alloc: str      # allocated - freed, kernels included

    @property
    def rate(self) -> str:
        """FLOP/s where the op has multiply-add work, else B/s (the rate it is bound by)."""
        return self.flop_per_s if self.flop_per_s not in ("", NONE) else self.bytes_per_s

    @property
    def rate_utilization(self) -> str:
        """The % of peak matching :attr:`rate`."""
        return self.utilization if self.flop_per_s not in ("", NONE) else self.bandwidth_utilization


def _work(v: float | None, unit: str) -> str:
    return si(v, unit) if v else NONE


def _rate(r, col: str, work: float, t: float) -> float | None:
    """The row's own rate column (the join's figure, NaN -> None) or, without that column, work / time."""
    return num(r.get(col)) if col in r else work / t


def _pct(v: float | None, exceeded: bool = False) -> str:
    return percent(v) + (" !" if exceeded else "")


def cache_resident(r: pd.Series | dict) -> bool:
    """Whether a row moved its bytes faster than main memory allows: ``cache_resident`` true, or
    ``bandwidth_utilization`` above 1 (rows written before the column existed)."""
    flag = r.get("cache_resident")
    if isinstance(flag, str):
        flag = flag.strip().lower() == "true"
    elif num(flag) is None:  # missing or NaN
        flag = False
    util = num(r.get("bandwidth_utilization"))
    return bool(flag) or (util is not None and util > 1.0)


def cache_marked(rows: list[list[str]]) -> bool:
    """Whether a formatted table (rows of cells) shows :data:`CACHE_MARK`, so it needs :data:`CACHE_LEGEND`."""
    return any(str(c).endswith(CACHE_MARK) for row in rows for c in row)


def op_cells(r: pd.Series | dict, exceeded: bool = False) -> OpCells:
    """The cells of one row (see the module docstring). ``exceeded`` marks the utilization of an
    op listed in ``summary["peak_exceeded"]`` with ``!``; a cache-resident row's bandwidth
    utilization carries :data:`CACHE_MARK`."""
    g = r.get
    kind = str(g("kind") or "op")
    # on CUDA runs the device's allocations are the ones that matter (the CPU column would mislead)
    mem = num(g("device_memory_usage_bytes"))
    mem = num(g("cpu_memory_usage_bytes")) if mem is None else mem
    alloc = si(mem, "B") if mem is not None else ""
    if kind != "op":
        return OpCells("", "", "", "", "", "", "", alloc if kind == "nested" else "")
    if not bool(g("counted", True)):
        return OpCells(UNCOUNTED, "", "", "", "", "", "", alloc)
    flops, other, nbytes, t = (num(g(c)) for c in ("flops", "other_flops", "bytes", "self_time_s"))
    timed = bool(t and t > 0)
    fps = si(_rate(r, "achieved_flop_per_s", flops, t), "FLOP/s") if timed and flops else NONE
    util = _pct(num(g("utilization")), exceeded) if fps != NONE else NONE
    bps = si(_rate(r, "achieved_bytes_per_s", nbytes, t), "B/s") if timed and nbytes else NONE
    butil = percent(num(g("bandwidth_utilization"))) if bps != NONE else NONE
    if bps != NONE and cache_resident(r):
        butil += CACHE_MARK
    return OpCells(_work(flops, "FLOP"), _work(other, "FLOP"), _work(nbytes, "B"), fps, util, bps, butil, alloc)


def iteration_word(summary: dict | None, plural: bool = False) -> str:
    """What one iteration of the run's workload is called: forward, generation, training step
    (the workload's own ``word``, :func:`harness.pipeline.workloads.word`)."""
    from ..pipeline.workloads import word

    return word(summary, plural)
