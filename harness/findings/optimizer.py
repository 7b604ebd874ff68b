"""A training step's optimizer run as many small ops (the single-tensor loop, or ``_foreach_*`` lists) where
one fused kernel (``fused=True``: ``_fused_adamw_``, ``_fused_adam_``, ``_fused_sgd_``) would move each byte once.

The fused kernel reads the parameters, their gradients and the optimizer's state and writes the parameters
and the state, each once (:mod:`harness.count.formulas_optim`)::

    B     = 3 x P + 2 x S          P: the trainable parameters' bytes (their gradients' bytes), S: the
                                   optimizer state's bytes; AdamW: S = 2P, so B = (4 + 3) x P; SGD with
                                   momentum 5 x P, without 3 x P
    r     = bytes / profiled time of the optimizer phase's own ops that move >= 64 KiB per call (the rate
            its element-wise ops reach on this machine; smaller ones are dispatch-bound)
    fused = B / r + k x o          k: the fused calls, one kernel per param group (plus the step counters'
                                   one ``_foreach_add_`` for Adam(W)); o: the measured dispatch overhead
    saved = t_opt - fused          t_opt: the optimizer phase's un-profiled p50 (``phases.optimizer.time_s_p50``)

``saved_share = saved / L`` (L: the step's un-profiled p50), so ``predicted_ratio`` is what
``ab X X:optimizer_impl=fused`` should measure. No finding when the step is fused already (a ``_fused_``
op in the optimizer phase, or ``--optimizer-impl fused``), compiled (``--optimizer-step compiled``), or the
optimizer has no fused form (only Adam, AdamW and SGD have one).
"""
from __future__ import annotations

from ..core.units import percent, seconds, si
from .compiled import MIN_RATE_BYTES
from .context import Context, itemsize
from .model import MIN_SAVED_SHARE, Finding

COLUMNS = ("op", "calls", "time_s", "bytes", "bytes_per_call", "in_rate")
#: optimizers with a fused kernel, and the fused calls each makes per param group
FUSED_CALLS = {"adamw": 2, "adam": 2, "sgd": 1}
SIDE = "optimizer_impl=fused"


def applies(ctx: Context) -> bool:
    """A train run whose eager optimizer step (Adam, AdamW, SGD) is not fused."""
    s = ctx.summary
    if s.get("workload") != "train" or s.get("optimizer_step") == "compiled" or s.get("optimizer_impl") == "fused":
        return False
    if str(s.get("optimizer") or "").lower() not in FUSED_CALLS:
        return False
    names = rows(ctx)
    return bool(names) and not any("_fused_" in r["op"] for r in names)


def rows(ctx: Context) -> list[dict]:
    """The optimizer phase's op rows: calls, profiled time per iteration, counted bytes; ``in_rate``: moves
    at least MIN_RATE_BYTES per call (counts towards r)."""
    ops = ctx.ops_by_shape if len(ctx.ops_by_shape) and "bytes" in ctx.ops_by_shape else ctx.ops
    if not len(ops) or "phase" not in ops:
        return []
    ops = ops[(ops["phase"] == "optimizer") & ((ops["kind"] == "op") if "kind" in ops else True)]
    out = []
    for rec in ops.to_dict("records"):
        calls = float(rec.get("dispatch_calls") or rec.get("calls") or 0)
        nbytes = float(rec.get("bytes") or 0)
        per_call = nbytes / calls if calls else 0.0
        out.append({"op": str(rec["name"]), "calls": int(calls), "time_s": float(rec.get("self_time_s") or 0),
                    "bytes": nbytes, "bytes_per_call": per_call, "in_rate": per_call >= MIN_RATE_BYTES})
    return sorted(out, key=lambda r: -r["time_s"])


def fused_bytes(ctx: Context) -> tuple[float, float, float]:
    """``(B, P, S)``: B = 3P + 2S (module docstring). P: memory.gradients_bytes, else trainable parameters x
    the dtype's size; S: memory.optimizer_state_bytes, else 2P (Adam, AdamW) or P (SGD with momentum)."""
    s = ctx.summary
    mem = s.get("memory") or {}
    p = float(mem.get("gradients_bytes") or int(s.get("trainable_params") or 0) * itemsize(ctx.dtype))
    state = mem.get("optimizer_state_bytes")
    st = float(state) if state is not None else (2.0 if str(s.get("optimizer")).lower() != "sgd" else 1.0) * p
    return 3 * p + 2 * st, p, st


def rate(mine: list[dict], ctx: Context, nbytes: float) -> tuple[float | None, str]:
    """r: bytes / time of the rows moving >= MIN_RATE_BYTES per call; else the bandwidth for ``nbytes``."""
    big = [r for r in mine if r["in_rate"]]
    t, b = sum(r["time_s"] for r in big), sum(r["bytes"] for r in big)
    if t > 0 and b > 0:
        return b / t, f"{si(b / t, 'B/s')} (its {sum(r['calls'] for r in big)} calls of >= 64 KiB: {si(b, 'B')} in {seconds(t)})"
    return ctx.bandwidth(nbytes)


def optimizer_s(ctx: Context, profiled_ops_s: float) -> float:
    """t_opt: the optimizer phase's un-profiled p50; else its ops' profiled time scaled to the latency p50."""
    ph = ((ctx.summary.get("phases") or {}).get("optimizer") or {}).get("time_s_p50")
    if ph:
        return float(ph)
    L, prof = ctx.latency_s or 0.0, ctx.profiled_s
    return profiled_ops_s * L / prof if prof else 0.0


def find(ctx: Context) -> list[Finding]:
    L = ctx.latency_s
    if not L or not applies(ctx):
        return []
    mine = rows(ctx)
    nbytes, p, st = fused_bytes(ctx)
    r, r_text = rate(mine, ctx, nbytes)
    if not r:
        return []
    name = str(ctx.summary.get("optimizer")).lower()
    k = FUSED_CALLS[name] * int(ctx.summary.get("optimizer_param_groups") or 1)
    o = ctx.overhead_s or 0.0
    fused = nbytes / r + k * o
    profiled = sum(x["time_s"] for x in mine)
    t_opt = optimizer_s(ctx, profiled)
    saved = t_opt - fused
    f = _finding(ctx, mine, {"name": name, "B": nbytes, "P": p, "S": st, "r": r, "r_text": r_text, "k": k,
                             "o": o, "fused": fused, "t_opt": t_opt, "saved": saved, "profiled": profiled})
    return [f] if f.saved_share >= MIN_SAVED_SHARE else []


def _finding(ctx: Context, mine: list[dict], v: dict) -> Finding:
    """The finding from :func:`find`'s figures ``v`` (evidence: the phase's ops, then the fused prediction)."""
    L = ctx.latency_s or 0.0
    n = int(ctx.summary.get("trainable_params") or 0)
    counted = sum(x["bytes"] for x in mine)
    arithmetic = (
        f"the optimizer phase ({v['name']}, {ctx.summary.get('optimizer_impl') or 'default'} implementation) takes "
        f"{seconds(v['t_opt'])} un-profiled ({seconds(v['profiled'])} profiled in {sum(x['calls'] for x in mine)} calls "
        f"of {len({x['op'] for x in mine})} ops moving {si(counted, 'B')}) for n = {si(n, '')} parameters of P = {si(v['P'], 'B')}. "
        f"Fused, it reads parameters, gradients and state and writes parameters and state once: B = 3 x P + 2 x S "
        f"= 3 x {si(v['P'], 'B')} + 2 x {si(v['S'], 'B')} = {si(v['B'], 'B')} ({v['B'] / v['P'] if v['P'] else 0:.1f} x P); "
        f"at r = {v['r_text']} that is {seconds(v['B'] / v['r'])}, plus {v['k']} fused calls x {seconds(v['o'])} "
        f"dispatch = {seconds(v['fused'])}; saved = {seconds(v['t_opt'])} - {seconds(v['fused'])} = "
        f"{seconds(v['saved'])} = {percent(v['saved'] / L if L else 0)} of the step p50 {seconds(L)}.")
    pred = {"op": "fused (predicted)", "calls": v["k"], "time_s": v["fused"], "bytes": v["B"],
            "bytes_per_call": v["B"] / v["k"], "in_rate": False}
    return Finding(
        id="optimizer:fused", family="optimizer", phase="optimizer",
        title=f"{v['name']} step as {sum(x['calls'] for x in mine)} op calls: fused it should take "
              f"{seconds(v['fused'])} instead of {seconds(v['t_opt'])}",
        evidence=mine + [pred], evidence_columns=COLUMNS, time_s=v["profiled"],
        time_share=v["profiled"] / ctx.profiled_s if ctx.profiled_s else 0.0,
        saved_share=v["saved"] / L if L else 0.0, saved_s=v["saved"], arithmetic=arithmetic,
        change="use the fused optimizer kernel (--optimizer-impl fused; in code: fused=True)",
        ab_side=SIDE, ab=ctx.ab(SIDE))
