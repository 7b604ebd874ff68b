"""G3: fragmentation — many small ops whose time is mostly the cost of calling them.

A call is **dispatch-bound** when its work at the ceilings (max(FLOPs / FLOP ceiling, bytes / bandwidth):
:meth:`Context.roofline_s`) takes less than one op's dispatch overhead on this machine, measured
(:func:`harness.findings.overhead.dispatch_overhead_s`: ``torch.add`` on 1-element tensors). Views and
other ops that move nothing are dispatch-bound by this rule. Convolutions and matmuls are left out:
they stay calls of their own (extern kernels) in a compiled graph.

The prediction: a compiled graph runs the dispatch-bound calls as part of a few fused kernels, so each
saves its overhead — saved = calls x measured overhead, against the un-profiled latency (the profiled
time of small ops is mostly the profiler's own cost, so it is shown as evidence only).
One finding per phase, one evidence row per op.
"""
from __future__ import annotations

from ..core.units import percent, seconds, si
from ..hardware.ceilings import op_class
from .context import Context
from .model import Finding, per_phase

COLUMNS = ("phase", "op", "calls", "bytes_per_call", "roofline_s_per_call", "profiled_s", "overhead_s")


def dispatch_bound(ctx: Context, event: dict) -> bool:
    if op_class(event["op"]) != "other" or ctx.overhead_s is None:
        return False
    work = ctx.roofline_s(event["op"], float(event.get("flops") or 0) + float(event.get("other_flops") or 0),
                          float(event.get("bytes") or 0))
    return work is not None and work < ctx.overhead_s


def rows(ctx: Context) -> list[dict]:
    """Dispatch-bound calls per (phase, op), most calls first."""
    groups: dict[tuple[str, str], dict] = {}
    for e in ctx.events.to_dict("records"):
        if not dispatch_bound(ctx, e):
            continue
        phase = str(e.get("phase") or "")
        g = groups.setdefault((phase, e["op"]), {"phase": phase, "op": e["op"], "calls": 0, "bytes": 0.0,
                                                 "roofline_s": 0.0, "profiled_s": 0.0})
        g["calls"] += 1
        g["bytes"] += float(e.get("bytes") or 0)
        g["roofline_s"] += ctx.roofline_s(e["op"], float(e.get("flops") or 0) + float(e.get("other_flops") or 0),
                                          float(e.get("bytes") or 0)) or 0.0
        g["profiled_s"] += ctx.call_time(phase, e["op"], e["input_shapes"])
    out = []
    for g in groups.values():
        n = g["calls"]
        out.append({"phase": g["phase"], "op": g["op"], "calls": n, "bytes_per_call": g["bytes"] / n,
                    "roofline_s_per_call": g["roofline_s"] / n, "profiled_s": g["profiled_s"],
                    "overhead_s": n * (ctx.overhead_s or 0.0)})
    return sorted(out, key=lambda r: (-r["calls"], r["op"]))


def find(ctx: Context) -> list[Finding]:
    if not len(ctx.events) or ctx.overhead_s is None or not ctx.latency_s:
        return []
    return per_phase(rows(ctx), lambda phase, mine: _finding(ctx, phase, mine))


def _finding(ctx: Context, phase: str, rows: list[dict]) -> Finding:
    calls = sum(r["calls"] for r in rows)
    overhead = ctx.overhead_s or 0.0
    saved = calls * overhead
    latency = ctx.latency_s or 0.0
    profiled = sum(r["profiled_s"] for r in rows)
    top = ", ".join(f"{r['op'].removeprefix('aten::')} x{r['calls']}" for r in rows[:4])
    arithmetic = (
        f"{calls} calls in {phase or 'the iteration'} do less work than one dispatch costs (each one's bytes / "
        f"bandwidth and FLOPs / ceiling under the measured per-op overhead, {seconds(overhead)}: torch.add on "
        f"1-element tensors timed on this machine); fused into a few compiled kernels they save "
        f"{calls} x {seconds(overhead)} = {seconds(saved)} = {percent(saved / latency if latency else 0)} of the "
        f"latency p50 {seconds(latency)}. Most calls: {top}; they moved {si(sum(r['bytes_per_call'] * r['calls'] for r in rows), 'B')} "
        f"and took {seconds(profiled)} profiled.")
    return Finding(
        id=f"fragments:{phase}", family="fragments", phase=phase or None,
        title=f"{calls} dispatch-bound calls in {phase or 'the iteration'}: fewer, larger ops",
        evidence=rows, evidence_columns=COLUMNS, time_s=profiled,
        time_share=profiled / ctx.profiled_s if ctx.profiled_s else 0.0,
        saved_share=saved / latency if latency else 0.0, saved_s=saved,
        arithmetic=arithmetic, change="fuse the small ops (torch.compile; on a GPU also CUDA graphs: compile=reduce-overhead)",
        ab_side=ctx.compile_side(phase), ab=ctx.ab(ctx.compile_side(phase)), needs_code_change=False)
