"""Activation checkpointing's price: the forward ops a training step re-runs inside its backward.

The counter marks them (an op dispatched while the autograd engine runs a node with grad mode on:
:meth:`harness.count.Counter.recomputed`; the train workload keeps the mark as the events'
``recomputed`` column). Their time is each recomputed call's profiled time in the backward phase
(:meth:`Context.call_time`: its ops_by_shape row's time per call)::

    recomputed time = sum over recomputed calls of their profiled time per call
    saved share     = recomputed time / profiled step time      (not checkpointing runs them no more)

Not checkpointing keeps the activations those ops re-create instead, so it is a code change (the model
calls ``torch.utils.checkpoint``) that needs the memory: ``python -m harness plan`` shows what fits.
The FLOPs are the recomputed events' own (``flops``: 2 x MACs; ``other_flops`` apart); the scores a fused
attention backward recomputes are not checkpointing's and are left out.
"""
from __future__ import annotations

from ..core.units import percent, seconds, si
from .context import Context
from .model import Finding, MIN_SAVED_SHARE, shares

COLUMNS = ("op", "modules", "calls", "time_s", "flops", "other_flops", "bytes")
CHANGE = "checkpoint fewer blocks where memory allows (`python -m harness plan` shows what fits)"


def rows(ctx: Context) -> list[dict]:
    """Recomputed calls per op: calls, profiled time per iteration, FLOPs, other FLOPs, bytes; most time first."""
    ev = ctx.events
    if not len(ev) or "recomputed" not in ev or not ev["recomputed"].astype(bool).any():
        return []
    groups: dict[str, dict] = {}
    for e in ev[ev["recomputed"].astype(bool)].to_dict("records"):
        g = groups.setdefault(e["op"], {"op": e["op"], "modules": set(), "calls": 0, "time_s": 0.0, "flops": 0,
                                        "other_flops": 0, "bytes": 0.0})
        g["modules"].add(str(e.get("module") or ""))
        g["calls"] += 1
        g["time_s"] += ctx.call_time(str(e.get("phase") or "backward"), e["op"], e["input_shapes"])
        g["flops"] += int(e.get("flops") or 0)
        g["other_flops"] += int(e.get("other_flops") or 0)
        g["bytes"] += float(e.get("bytes") or 0)
    out = [dict(g, modules=", ".join(sorted(g["modules"] - {""})) or "(model)") for g in groups.values()]
    return sorted(out, key=lambda r: (-r["time_s"], r["op"]))


def find(ctx: Context) -> list[Finding]:
    """One finding (``recompute:backward``) when the recomputed calls take at least MIN_SAVED_SHARE of the step."""
    if ctx.summary.get("workload") != "train":
        return []
    mine = rows(ctx)
    if not mine:
        return []
    time_s = sum(r["time_s"] for r in mine)
    flops, other = sum(r["flops"] for r in mine), sum(r["other_flops"] for r in mine)
    calls, prof = sum(r["calls"] for r in mine), ctx.profiled_s
    top = ", ".join(f"{r['op'].removeprefix('aten::')} x{r['calls']}" for r in mine[:4])
    arithmetic = (
        f"{calls} forward calls re-run inside backward (activation checkpointing): {si(flops, 'FLOP')} "
        f"(+ {si(other, 'FLOP')} other) per step, {seconds(time_s)} profiled (each call at its backward "
        f"ops_by_shape time) = {seconds(time_s)} / {seconds(prof)} = {percent(time_s / prof if prof else 0)} of the "
        f"profiled step; not checkpointing saves that time and keeps their activations instead. Most time: {top}.")
    f = Finding(id="recompute:backward", family="recompute", phase="backward",
                title=f"checkpointing re-runs {calls} forward calls in backward ({si(flops, 'FLOP')})",
                evidence=mine, evidence_columns=COLUMNS, arithmetic=arithmetic, change=CHANGE, ab_side=None,
                ab=None, needs_code_change=True, **shares(time_s, time_s, prof, ctx.latency_s))
    return [f] if f.saved_share >= MIN_SAVED_SHARE else []
