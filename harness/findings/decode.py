"""A generate run's decode far below the bandwidth ceiling (MBU), and where a step's time goes instead.

One decode step must at least move its counted bytes (the weights and the KV cache it reads):
``MBU = bytes_per_step / step p50 / bandwidth``. Below :data:`MAX_MBU`, the step's un-profiled p50 ``T``
is split into four parts, seconds per step::

    floor    = max(bytes_per_step / bandwidth, flops_per_step / FLOP ceiling)     (the roofline of a step)
    beyond   = decode ops' profiled time per step - calls per step x p - floor      (kernels slower than it;
                                                                                    p: the profiler's cost per
                                                                                    call:
                                                                                    compiled.profiler_cost)
    dispatch = calls per step x measured per-op overhead
    between  = T - (floor + beyond + dispatch)                                      (Python, framework)

An op's profiled time holds part of its own call's dispatch, so the parts can outlast ``T``: then
``between`` is 0 and ``beyond`` and ``dispatch`` are scaled by one factor so the four sum to ``T`` (said
so in the arithmetic). The whole gap ``T - floor`` is a bound, not one change. Dispatch and the time
between ops are what fewer, larger ops remove — the ``compiled`` and ``fragments:decode`` findings predict
and verify that — so this finding claims only the part no other family does, the kernels' own gap to
their roofline, as a share of the generation: ``saved_share = new_tokens x beyond / L`` (``L``: the
generation's latency p50; a bound: the kernels at their roofline, by batching more sequences per step or a
better decode kernel). A compiled run's calls are its kernels (kernels.csv: the op rows hold the
counted eager ops, untimed); uncalibrated, its bandwidth is the fastest kernel's rate. Not verified (``ab_side`` None): the ``compiled`` family already
predicts ``compile`` for a generate run, and an A/B of both would count it twice.
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.units import percent, seconds, si
from . import compiled
from .context import Context
from .model import MIN_SAVED_SHARE, Finding

#: decode at or above this share of the bandwidth is not reported
MAX_MBU = 0.5
COLUMNS = ("part", "calls", "step_bytes", "weights_bytes", "kv_read_bytes", "step_s", "step_share",
           "iteration_s", "how")


def _decode(ctx: Context) -> dict | None:
    """summary.json's decode figures (``phases.decode``, ``decode_step_s.p50`` as ``step_s``, ``new_tokens``
    as ``steps``) of a generate run with decode ops in its tables; else None."""
    s = ctx.summary
    dec = (s.get("phases") or {}).get("decode") or {}
    step = (s.get("decode_step_s") or {}).get("p50")
    if s.get("workload") != "generate" or not dec.get("bytes_per_step") or not step or not s.get("new_tokens"):
        return None
    if not ctx.latency_s or "phase" not in ctx.ops or not (ctx.ops["phase"] == "decode").any():
        return None
    return {**dec, "step_s": float(step), "steps": int(s["new_tokens"])}


def timed(ctx: Context) -> pd.DataFrame:
    """The run's timed calls per iteration (``phase, calls, time_s, bytes, achieved_bytes_per_s``): a compiled
    run's kernels (its op rows carry the counted eager ops, untimed), else ops.csv's op rows."""
    k = ctx.kernels
    if ctx.summary.get("compile") and len(k) and {"phase", "calls", "time_s"} <= set(k.columns):
        return k.assign(calls=k["calls"].fillna(0), time_s=k["time_s"].fillna(0))
    ops = compiled._ops(ctx)
    return ops.assign(calls=ops["dispatch_calls"], time_s=ops["self_time_s"])


def decode_ops(ctx: Context) -> tuple[float, float]:
    """(calls, profiled seconds) of the decode phase's timed calls, per generation."""
    rows = timed(ctx)
    mine = rows[rows["phase"] == "decode"]
    return float(mine["calls"].sum()), float(mine["time_s"].sum())


def bandwidth(ctx: Context, nbytes: float) -> tuple[float | None, str]:
    """:meth:`Context.bandwidth`; uncalibrated in a compiled run, the fastest kernel's rate instead (the
    fastest-op fallback reads the untimed op rows)."""
    calibrated = ctx.peak is not None and ctx.peak.bandwidth_for(int(nbytes))[0]
    rows = timed(ctx)
    if calibrated or not ctx.summary.get("compile") or "achieved_bytes_per_s" not in rows:
        return ctx.bandwidth(nbytes)
    rates = rows["achieved_bytes_per_s"].replace([math.inf], math.nan).dropna()
    if not len(rates) or rates.max() <= 0:
        return None, "bandwidth unknown"
    return float(rates.max()), f"{si(rates.max(), 'B/s')} (fastest kernel of this run; bandwidth not calibrated)"


def floor_row(ctx: Context, dec: dict) -> dict:
    """The step's roofline: max(bytes_per_step / bandwidth, flops_per_step / the peak's FLOP/s)."""
    nbytes, flops = float(dec["bytes_per_step"]), float(dec.get("flops_per_step") or 0)
    bw, source = bandwidth(ctx, nbytes)
    flop = getattr(ctx.peak, "flop_per_s", None)
    t_bytes = nbytes / bw if bw else 0.0
    t_flops = flops / flop if flop and flops else 0.0
    how = f"{si(nbytes, 'B')} at {source} = {seconds(t_bytes)}"
    how += f"; {si(flops, 'FLOP')} at {si(flop, 'FLOP/s')} = {seconds(t_flops)}" if flop and flops else ""
    return {"part": "floor (roofline)", "step_bytes": nbytes, "weights_bytes": dec.get("weights_bytes"),
            "kv_read_bytes": dec.get("kv_read_bytes_per_step"), "step_s": max(t_bytes, t_flops),
            "how": how + (" (bytes)" if t_bytes >= t_flops else " (FLOPs)")}


def parts(ctx: Context, dec: dict) -> tuple[list[dict], float]:
    """The four rows of one step (floor, beyond, dispatch, between: module docstring), summing to the step's
    p50, and the factor ``beyond`` and ``dispatch`` were scaled by (1: not scaled)."""
    T, n = dec["step_s"], dec["steps"]
    calls, profiled = decode_ops(ctx)
    calls, profiled = calls / n, profiled / n
    p, o = compiled.profiler_cost(ctx, timed(ctx)), ctx.overhead_s or 0.0
    floor = floor_row(ctx, dec)
    floor["step_s"] = min(floor["step_s"], T)
    beyond = max(profiled - calls * p - floor["step_s"], 0.0)
    dispatch = calls * o
    scale = min(1.0, (T - floor["step_s"]) / (beyond + dispatch)) if beyond + dispatch > 0 else 1.0
    scaled = f" x {scale:.3g} (scaled)" if scale < 1 else ""
    rows = [floor,
            {"part": "kernels beyond their roofline", "calls": calls, "step_s": beyond * scale,
             "how": f"(profiled {seconds(profiled)} - {calls:.4g} calls x {seconds(p)} profiler's cost - floor){scaled}"},
            {"part": "dispatch", "calls": calls, "step_s": dispatch * scale,
             "how": f"({calls:.4g} calls x {seconds(o)} measured per-op overhead){scaled}"}]
    between = max(T - sum(r["step_s"] for r in rows), 0.0) if scale == 1 else 0.0
    rows.append({"part": "Python and framework between ops", "step_s": between,
                 "how": "step p50 - the three above" + (" (0: they fill the p50)" if scale < 1 else "")})
    for r in rows:
        r["step_share"], r["iteration_s"] = r["step_s"] / T, r["step_s"] * n
    return rows, scale


def _title(mbu: float, rows: list[dict], calibrated: bool) -> str:
    """``decode at 3.1% of bandwidth: 62.0% of a step is Python and dispatch between ops`` — the largest of
    floor, beyond and dispatch + between; ``at most 3.1%`` against an uncalibrated bandwidth (a run's fastest
    op or kernel: a lower bound of the bandwidth)."""
    floor, beyond, dispatch, between = (r["step_share"] for r in rows)
    largest = max((dispatch + between, "Python and dispatch between ops"),
                  (beyond, "kernels slower than their roofline"), (floor, "the bandwidth floor"))
    at = f"at {percent(mbu)}" if calibrated else f"at most {percent(mbu)}"
    return f"decode {at} of bandwidth: {percent(largest[0])} of a step is {largest[1]}"


def _arithmetic(ctx: Context, dec: dict, mbu: float, rows: list[dict], scale: float) -> str:
    """The MBU, the four parts, the bound and the prediction, written out."""
    T, n, L = dec["step_s"], dec["steps"], ctx.latency_s or 0.0
    floor, beyond, dispatch, between = (r["step_s"] for r in rows)
    _, source = bandwidth(ctx, float(dec["bytes_per_step"]))
    saved = dispatch + between
    text = (f"MBU = {si(dec['bytes_per_step'], 'B')} per step (weights {si(dec.get('weights_bytes'), 'B')}, KV read "
            f"{si(dec.get('kv_read_bytes_per_step'), 'B')}) / step p50 {seconds(T)} / {source} = {percent(mbu)}. "
            f"A step's p50 {seconds(T)} = floor {seconds(floor)} + kernels beyond their roofline {seconds(beyond)} + "
            f"dispatch {seconds(dispatch)} + Python between ops {seconds(between)}")
    if scale < 1:
        text += (f" (the parts came to more than the p50 — an op's profiled time holds part of its own dispatch — so "
                 f"'beyond' and 'dispatch' were scaled by {scale:.3g} and 'between' is 0)")
    return text + (
        f". Bound: {n} steps x (p50 - floor) = {n} x {seconds(T - floor)} = {seconds(n * (T - floor))} = "
        f"{percent(n * (T - floor) / L)} of the generation's p50 {seconds(L)}. Dispatch and Python between ops "
        f"({seconds(saved)} a step) are what fewer, larger ops remove: the compiled and fragments findings' share, "
        f"not counted here. Predicted, a bound (the kernels at their roofline): {n} x {seconds(beyond)} = "
        f"{seconds(n * beyond)} = {percent(n * beyond / L)} of the generation ({percent(beyond / T)} of a step); "
        f"an eager op's time holds its own dispatch and, for a composite op (rms_norm: five kernels), its "
        f"kernels' dispatch, part of which compiling also removes.")


def _how(ctx: Context) -> str:
    """What fewer, larger decode ops are, for this run: compile it; compiled, on a GPU CUDA graphs."""
    cuda = str(ctx.summary.get("device") or "cpu").startswith("cuda")
    if ctx.summary.get("compile"):
        return "CUDA graphs: --compile reduce-overhead" if cuda else "fewer graph breaks and kernels per step"
    return "torch.compile / CUDA graphs" if cuda else "torch.compile"


def find(ctx: Context) -> list[Finding]:
    """``decode:mbu`` when MBU = bytes_per_step / step p50 / bandwidth < MAX_MBU and the predicted
    ``new_tokens x beyond / L`` is at least MIN_SAVED_SHARE; else nothing."""
    dec = _decode(ctx)
    bw, source = bandwidth(ctx, float(dec["bytes_per_step"])) if dec else (None, "")
    if dec is None or not bw:
        return []
    mbu = float(dec["bytes_per_step"]) / dec["step_s"] / bw
    rows, scale = parts(ctx, dec)
    n, L = dec["steps"], ctx.latency_s or 0.0
    saved_step = rows[1]["step_s"]  # the kernels' gap; dispatch and between are other families' (docstring)
    share = n * saved_step / L
    if mbu >= MAX_MBU or share < MIN_SAVED_SHARE:
        return []
    _, profiled = decode_ops(ctx)
    graphs = _how(ctx)
    return [Finding(
        id="decode:mbu", family="decode", title=_title(mbu, rows, "not calibrated" not in source), phase="decode",
        evidence=rows, evidence_columns=COLUMNS, time_s=profiled, time_share=profiled / ctx.profiled_s if ctx.profiled_s else 0.0,
        saved_share=share, saved_s=n * saved_step, arithmetic=_arithmetic(ctx, dec, mbu, rows, scale),
        change=(f"the kernels' gap to their roofline: more sequences per decode step (batching) or a fused decode "
                f"kernel; dispatch and Python between ops: fewer, larger ops ({graphs}; see the compiled and "
                f"fragments findings)"),
        ab_side=None, ab=None, needs_code_change=True)]
