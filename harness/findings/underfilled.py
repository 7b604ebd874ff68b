"""Underfilled: convolutions and matmuls far below their ceiling at this batch size, and the throughput a
larger batch should buy.

A small batch leaves a library kernel too little work to fill the machine (few output tiles, weights
re-read per sample), and every op call, Python line and module call costs the same at any batch. How
much a larger batch fills the kernels is **measured**, not read off the roofline (the roofline bounds the
time from below; on the 2-vCPU host the batch-1 convolutions run at 5-60 % of it for reasons it does not
model): each distinct ``conv2d`` and ``linear`` shape is timed in the run's process at the run's batch
``B`` and at ``k x B`` (``k`` = :data:`FACTOR`; the largest ops first, within ``BUDGET_S``; unmeasured
shapes scale by ``k``). The iteration at ``k x B`` is then::

    t(kB) = sum over measured ops of  eager_s + calls x (t_micro(kB) - t_micro(B))   (eager_s: profiled, less
                                                     the profiler's per-call cost p; the increment, not the
                                                     ratio: an in-model call's extra time over the micro-
                                                     benchmark's (cold caches, dispatch) does not grow with
                                                     the batch; the ratio predicted 0.849 where shufflenet
                                                     measured 0.685)
          + k x (the other ops' un-profiled time, less their calls' dispatch overhead)
          + the fixed part: calls x dispatch overhead + (p50 - the ops' un-profiled time)  (Python, modules)

judged on throughput, as ``ab X X:batch_size=kB`` judges it: predicted per-sample ratio =
``t(kB) / (k x p50)`` and ``saved_share = 1 -`` that. Only a forward workload (a decode step's batch is
the number of sequences; a training step's batch changes the optimization), only when the measured ops'
utilization is under :data:`UNDERFILLED` of their ceiling, and only when ``k x B`` fits: the largest batch
whose forecast peak fits the device's memory (:func:`largest_batch`, ``harness plan``'s search) is in the
finding's text, and a ``k x B`` beyond it gets no finding.
"""
from __future__ import annotations

from typing import Any

from ..core.units import percent, seconds, si
from .context import Context, tensor_shapes
from .layout import conv_args
from .model import MIN_SAVED_SHARE, Finding
from .timing import BUDGET_S, ROUNDS, fastest, within_budget

FACTOR = 8
UNDERFILLED = 0.5
COLUMNS = ("op", "input_shapes", "calls", "eager_s", "micro_s_at_b", "micro_s_at_kb", "scale", "predicted_s_at_kb")


def op_call(event: dict) -> dict | None:
    """What it takes to rebuild a conv2d (:func:`harness.findings.layout.conv_args`) or a linear at any batch."""
    op = str(event.get("op")).rsplit("::", 1)[-1]
    if op == "conv2d":
        return conv_args(event)
    shapes = tensor_shapes(event.get("input_shapes"))
    if op == "linear" and len(shapes) >= 2 and len(shapes[1]) == 2:
        return {"op": "linear", "x": shapes[0], "w": shapes[1], "bias": len(shapes) > 2 and shapes[2] == shapes[1][:1]}
    return None


def measure(events: Any, k: int = FACTOR, dtype: str = "float32", device: str = "cpu",
            budget_s: float = BUDGET_S) -> dict:
    """``{op + shapes: (s/call at B, s/call at k x B)}``: the largest shapes first, within ``budget_s``."""
    import torch

    seen: dict = {}
    for e in events.to_dict("records") if len(events) else []:
        if (args := op_call(e)) is not None:
            seen.setdefault(f"{e['op']} {tensor_shapes(e['input_shapes'])}", (float(e.get("macs") or 0), args))
    dt = getattr(torch, dtype, torch.float32)
    ordered = [(key, args) for key, (_, args) in sorted(seen.items(), key=lambda kv: -kv[1][0])]
    return within_budget(ordered, lambda a: (_time(torch, a, 1, dt, device), _time(torch, a, k, dt, device)), budget_s)


def _time(torch: Any, a: dict, k: int, dt: Any, device: str) -> float:
    """Seconds of one call at ``k`` times the batch: the fastest of ``ROUNDS`` single calls after a warm-up."""
    import torch.nn.functional as F

    x = torch.randn([a["x"][0] * k, *a["x"][1:]], dtype=dt, device=device)
    w = torch.randn(a["w"], dtype=dt, device=device)
    b = torch.randn(a["w"][0], dtype=dt, device=device) if a["bias"] else None
    fn = ((lambda: F.linear(x, w, b)) if a["op"] == "linear"
          else (lambda: F.conv2d(x, w, b, a["stride"], a["padding"], 1, a["groups"])))
    return fastest(fn, device, rounds=ROUNDS, calls=1)


def largest_batch(spec: Any, device: str, budget: tuple[int, str] | None = None) -> dict:
    """``{batch_size, budget_bytes, budget_source, capped}``: the largest batch of the run's spec whose
    forecast peak fits ``budget`` (bytes, where from; default: the device's memory, a CUDA device's total, else
    the available RAM), searched on meta (:func:`harness.memory.plan.plan_spec`, a few forecasts: 0.2 s for
    resnet50); {} when it cannot be searched (a finding's extra never fails the run)."""
    try:
        from ..memory.budget import device_budget
        from ..memory.plan import plan_spec

        budget_bytes, source = budget or device_budget(device)
        plan = plan_spec(spec, budget_bytes, source)
    except Exception:  # noqa: BLE001 - advice; the finding stands without it
        return {}
    return {"batch_size": plan.batch_size, "budget_bytes": budget_bytes, "budget_source": source,
            "capped": plan.capped}


def fit_text(ctx: Context, batch: int) -> tuple[str, bool]:
    """``(text, fits)``: whether ``batch`` fits the largest batch the memory forecast found, in words (searched
    now by ``ctx.fit_search`` when the run has not searched it yet)."""
    if not ctx.batch_fit and ctx.fit_search is not None:
        ctx.batch_fit, ctx.fit_search = ctx.fit_search(), None
    fit = ctx.batch_fit
    if not fit:
        return "check it fits: python -m harness plan", True
    best = fit.get("batch_size")
    where = f"{si(fit['budget_bytes'], 'B')} of {fit['budget_source']}"
    if best is None:
        return f"not even batch 1 fits {where} (memory forecast)", False
    most = f"at least {best}" if fit.get("capped") else str(best)
    return f"the largest batch that fits {where} is {most} (memory forecast on meta)", batch <= best


def rows(ctx: Context, p: float) -> list[dict]:
    """Per measured op shape: calls, eager seconds (profiled less p per call), the micro-benchmark's scale."""
    if not ctx.batch_times or not len(ctx.ops_by_shape):
        return []
    out = []
    ops = ctx.ops_by_shape
    for r in ops[ops.get("kind", "op") == "op"].to_dict("records"):
        key = f"{r['name']} {tensor_shapes(r.get('input_shapes'))}"
        if key not in ctx.batch_times:
            continue
        t_b, t_kb = ctx.batch_times[key]
        n = float(r.get("dispatch_calls") or 0)
        eager = max(float(r.get("self_time_s") or 0) - n * p, 0.0)
        out.append({"op": str(r["name"]), "input_shapes": key.split(" ", 1)[1], "calls": int(n), "eager_s": eager,
                    "micro_s_at_b": t_b, "micro_s_at_kb": t_kb, "scale": t_kb / t_b if t_b > 0 else float(ctx.batch_factor),
                    "predicted_s_at_kb": eager + n * (t_kb - t_b),
                    "flops": float(r.get("flops") or 0)})
    return sorted(out, key=lambda r: -r["eager_s"])


def find(ctx: Context) -> list[Finding]:
    from .compiled import _ops, profiler_cost

    L, k = ctx.latency_s, ctx.batch_factor
    if ctx.summary.get("workload") not in (None, "forward") or not L or k <= 1 or not len(ctx.ops):
        return []
    p = profiler_cost(ctx)
    found = rows(ctx, p)
    if not found:
        return []
    ops = _ops(ctx)
    calls = float(ops["dispatch_calls"].sum())
    unprof = float((ops["self_time_s"] - ops["dispatch_calls"] * p).clip(lower=0).sum())
    measured = sum(r["eager_s"] for r in found)
    o = ctx.overhead_s or 0.0
    fixed = calls * o + max(L - unprof, 0.0)
    scaled = max(unprof - measured - calls * o, 0.0)
    t_kb = sum(r["predicted_s_at_kb"] for r in found) + k * scaled + fixed
    ceiling = ctx.flop_ceiling(found[0]["op"]) or 0.0
    util = sum(r["flops"] for r in found) / measured / ceiling if measured and ceiling else 0.0
    ratio = t_kb / (k * L)
    if util >= UNDERFILLED or 1 - ratio < MIN_SAVED_SHARE:
        return []
    b = int(ctx.summary.get("batch_size") or 1)
    fit, fits = fit_text(ctx, k * b)
    if not fits:
        return []
    arithmetic = (
        f"{len(found)} conv/linear shapes ({seconds(measured)} un-profiled, {percent(util)} of the ceiling) timed here "
        f"at batch {b} and {k * b}: {seconds(measured)} -> {seconds(sum(r['predicted_s_at_kb'] for r in found))}; "
        f"other ops {seconds(scaled)} x {k}; fixed (dispatch {calls:.0f} x {seconds(o)} + Python "
        f"{seconds(max(L - unprof, 0.0))}) {seconds(fixed)}: t({k * b}) = {seconds(t_kb)} for {k}x the samples; per "
        f"sample {seconds(t_kb)} / ({k} x {seconds(L)}) = {ratio:.3f} of today's. Batch {k * b} fits: {fit}.")
    side = f"batch_size={k * b}"
    return [Finding(id=f"underfilled:{side}", family="underfilled", phase=None,
                    title=f"convolutions/matmuls at {percent(util)} of their ceiling at batch {b}: batch {k * b} "
                          f"should give {1 / ratio:.2f}x the samples/s",
                    evidence=[{c: r[c] for c in COLUMNS} for r in found], evidence_columns=COLUMNS, time_s=measured,
                    time_share=measured / L, saved_share=1 - ratio, saved_s=(1 - ratio) * L, arithmetic=arithmetic,
                    change=f"a larger batch ({k * b}; {fit}), judged on samples/s",
                    ab_side=side, ab=ctx.ab(side))]
