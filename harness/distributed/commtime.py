"""Time in collectives, read from a rank's Chrome trace.

torch 2.14 records a collective as a ``c10d::<op>`` CPU op (``c10d::allreduce_``) around a
``gloo:<op>`` / ``nccl:<op>`` annotation (``gloo:all_reduce``); on CUDA, NCCL's kernels appear
as ``ncclDevKernel_*`` / ``ncclKernel_*``. These nest and overlap (the gloo work may run on
another thread), so

    comm_time_s = |union(collective intervals) ∩ union(iteration intervals)| / iterations
    comm_share  = comm_time_s / (sum of iteration durations / iterations)

where an iteration interval is the workload's label range (``model_inference``).
"""
from __future__ import annotations

from typing import Iterable

COMM_PREFIXES = ("c10d::", "gloo:", "nccl:", "ncclDevKernel", "ncclKernel")
US = 1e-6


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _overlap(xs: list[tuple[float, float]], ys: list[tuple[float, float]]) -> float:
    """Total length of the intersection of two sorted, disjoint interval lists."""
    i = j = 0
    total = 0.0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        total += max(b - a, 0.0)
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return total


def comm_figures(trace: dict, label: str = "model_inference") -> dict:
    """``{comm_time_s, iteration_time_s, comm_share, iterations}`` per profiled iteration."""
    comm, iters = [], []
    for ev in trace.get("traceEvents", []):
        if ev.get("ph") != "X" or "dur" not in ev:
            continue
        span = (float(ev["ts"]), float(ev["ts"]) + float(ev["dur"]))
        name = str(ev.get("name", ""))
        if name == label and ev.get("cat") == "user_annotation":
            iters.append(span)
        elif name.startswith(COMM_PREFIXES):
            comm.append(span)
    n = len(iters)
    if not n:
        return {"comm_time_s": None, "iteration_time_s": None, "comm_share": None, "iterations": 0}
    windows = _union(iters)
    iteration = sum(b - a for a, b in iters) / n * US
    comm_time = _overlap(_union(comm), windows) / n * US
    return {"comm_time_s": comm_time, "iteration_time_s": iteration,
            "comm_share": comm_time / iteration if iteration > 0 else None, "iterations": n}
