"""Attention written out op by op (eager) where ``torch.nn.functional.scaled_dot_product_attention`` is faster.

Detection (:func:`blocks`, pure, from the counter's events in dispatch order): a softmax (``softmax``,
``_softmax``) whose input has 3 or more dimensions ``[..., L, S]`` (the scores), preceded within
``MAX_GAP`` events of its phase by a matmul-class op (``matmul``, ``bmm``, ``baddbmm``, ``mm``) whose output
is that shape (QK^T: inputs ``q [..., L, E]`` and ``k^T [..., E, S]``) and followed by one whose first matrix
is that shape (PV: ``v [..., S, Ev]``). The block is QK^T, every op between that reads a tensor of the
scores' shape (scale, mask add, masked_fill, softmax, dtype casts, dropout) and PV; a mask is an add,
masked_fill or where taking a second tensor.

Measurement (:func:`measure`, like :func:`harness.findings.layout.measure`: in the run's process, after the
run, ``BUDGET_S`` seconds in all, the most multiply-adds first, the first shape always timed): per distinct
(q, k, v, dtype, ops between), (a) the eager form, the block's ops replayed (``q @ k^T``, ``* scale``,
``+ mask`` (causal when L = S), softmax, casts, dropout, ``@ v``) and (b)
``scaled_dot_product_attention(q, k, v, is_causal=mask and L = S)`` (a mask with L != S: passed as
``attn_mask``), each the fastest of ``ROUNDS`` rounds of up to ``CALLS`` calls after a warm-up call (:func:`harness.findings.timing.fastest`), under
``torch.inference_mode()``. The family (:func:`find`) is arithmetic on those un-profiled times::

    saved = sum over (phase, q, k, v) groups of  calls x (t_eager - t_sdpa)      (measured per call)
    saved_share = saved / latency p50

(shapes left unmeasured are assumed unchanged; the QK^T/PV matmuls' neighbours — projections, reshapes,
``repeat_kv`` — are not in it). Eager inference runs only (forward, generate): a training step or a compiled
run gets no finding. An ``hf:`` model takes the change as a model option (``ab X X:attn_implementation=sdpa``);
other models need a code change.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from ..core.units import percent, seconds
from .context import Context, broadcast, tensor_shapes
from .model import MIN_SAVED_SHARE, Finding
from .timing import BUDGET_S, CALLS, ROUNDS, fastest, within_budget

MAX_GAP = 32  # events between the softmax and its QK^T / PV matmuls
MATMULS = ("matmul", "bmm", "baddbmm", "mm")
SOFTMAX = ("softmax", "_softmax")
MASK_OPS = ("add", "add_", "masked_fill", "masked_fill_", "where", "sub")
SIDE = "attn_implementation=sdpa"
COLUMNS = ("phase", "ops", "q_shape", "k_shape", "v_shape", "calls", "profiled_s", "eager_s_per_call",
           "sdpa_s_per_call", "speedup", "saved_s")


def _name(op: Any) -> str:
    return str(op).rsplit("::", 1)[-1]


def matmul_io(event: dict) -> tuple[list[int], list[int], list[int]] | None:
    """``(a, b, a @ b)`` shapes of a matmul-class event (``baddbmm``: its two batch matrices), None for
    another op or shapes that do not multiply."""
    name = _name(event.get("op"))
    if name not in MATMULS:
        return None
    shapes = tensor_shapes(event.get("input_shapes"))
    shapes = shapes[1:3] if name == "baddbmm" else shapes[:2]
    if len(shapes) < 2 or len(shapes[0]) < 2 or len(shapes[1]) < 2 or shapes[0][-1] != shapes[1][-2]:
        return None
    a, b = shapes
    return a, b, broadcast([a[:-2], b[:-2]]) + [a[-2], b[-1]]


def blocks(events: Any) -> list[dict]:
    """Every eager attention block of ``events``: ``{phase, q, k, v, dtype, mask, steps, events}`` (``steps``:
    the names of the ops between QK^T and PV that read the scores, softmax included; ``events``: the block's)."""
    recs = events.to_dict("records") if events is not None and len(events) else []
    out = []
    for i, e in enumerate(recs):
        shapes = tensor_shapes(e.get("input_shapes"))
        if _name(e.get("op")) not in SOFTMAX or not shapes or len(shapes[0]) < 3:
            continue
        s = shapes[0]
        qk = _near(recs, i, -1, lambda r: (io := matmul_io(r)) is not None and io[2] == s)
        pv = _near(recs, i, 1, lambda r: (io := matmul_io(r)) is not None and io[0] == s)
        if qk is not None and pv is not None:
            out.append(_block(recs, qk, i, pv, s))
    return out


def _near(recs: list[dict], i: int, step: int, match: Callable[[dict], bool]) -> int | None:
    """The nearest event from ``i`` in direction ``step`` that matches, in ``i``'s phase, before another softmax."""
    for j in range(i + step, i + step * (MAX_GAP + 1), step):
        if not 0 <= j < len(recs) or recs[j].get("phase") != recs[i].get("phase") or _name(recs[j].get("op")) in SOFTMAX:
            return None
        if match(recs[j]):
            return j
    return None


def _block(recs: list[dict], qk: int, sm: int, pv: int, s: list[int]) -> dict:
    a, b, _ = matmul_io(recs[qk]) or ([], [], [])
    v = (matmul_io(recs[pv]) or ([], [], []))[1]
    between = [r for r in recs[qk + 1:pv] if s in tensor_shapes(r.get("input_shapes"))]
    steps = tuple(_name(r.get("op")) for r in between)
    mask = any(_name(r.get("op")) in MASK_OPS and len(tensor_shapes(r.get("input_shapes"))) >= 2 for r in between)
    return {"phase": str(recs[sm].get("phase")), "q": a, "k": b[:-2] + [b[-1], b[-2]], "v": v,
            "dtype": str(recs[sm].get("dtype") or "float32").removeprefix("torch."), "mask": mask, "steps": steps,
            "events": [recs[qk], *between, recs[pv]]}


def key_of(block: dict) -> str:
    """``q=[1, 2, 16, 8] k=[1, 2, 16, 8] v=[1, 2, 16, 8] float32 masked mul→add→softmax``: what is timed."""
    return (f"q={block['q']} k={block['k']} v={block['v']} {block['dtype']} "
            f"{'masked ' if block['mask'] else ''}{'→'.join(block['steps'])}")


def measure(events: Any, dtype: str = "float32", device: str = "cpu", budget_s: float = BUDGET_S) -> dict:
    """``{key_of(block): (eager s/call, sdpa s/call, block)}`` for the events' distinct attention blocks
    within ``budget_s`` seconds, the most multiply-adds (``numel(scores) x (E + Ev)``) first."""
    import torch

    seen: dict = {}
    for b in blocks(events):
        macs = math.prod(b["q"][:-1]) * b["k"][-2] * (b["q"][-1] + b["v"][-1])
        seen.setdefault(key_of(b), (-macs, b))
    ordered = [(key, b) for key, (_, b) in sorted(seen.items(), key=lambda kv: kv[1][0])]
    return within_budget(ordered, lambda b: _time_both(torch, b, dtype, device), budget_s)


def _time_both(torch: Any, b: dict, dtype: str, device: str) -> tuple[float, float, dict]:
    """(eager s/call, sdpa s/call, the block) (:func:`harness.findings.timing.fastest`)."""
    dt = getattr(torch, b["dtype"], None) or getattr(torch, dtype, torch.float32)
    eager, sdpa = _forms(torch, b, dt, device)
    return fastest(eager, device), fastest(sdpa, device), b


def _forms(torch: Any, b: dict, dt: Any, device: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """No-argument functions running the block once: its eager ops replayed, and as SDPA."""
    import torch.nn.functional as F

    q, k, v = (torch.randn(s, dtype=dt, device=device) for s in (b["q"], b["k"], b["v"]))
    L, S = b["q"][-2], b["k"][-2]
    causal = b["mask"] and L == S
    mask = torch.zeros(L, S, dtype=dt, device=device)
    if causal:
        mask = mask.masked_fill(torch.ones(L, S, dtype=torch.bool, device=device).triu(1), float("-inf"))
    scale = 1.0 / math.sqrt(b["q"][-1])

    def eager() -> Any:
        x = torch.matmul(q, k.transpose(-2, -1))
        for step in b["steps"]:
            if step in ("mul", "div"):
                x = x * scale
            elif step in MASK_OPS and b["mask"]:
                x = x + mask
            elif step in SOFTMAX:
                x = torch.softmax(x, -1)
            elif step in ("to", "_to_copy", "type_as"):
                x = x.to(dt)
            elif "dropout" in step:
                x = F.dropout(x, 0.0, False)
        return torch.matmul(x, v)

    attn_mask = mask if b["mask"] and not causal else None
    return eager, lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)


def rows(ctx: Context) -> list[dict]:
    """One row per (phase, measured block): its calls per iteration, its profiled time and both timed forms."""
    if not ctx.attention_times or not len(ctx.events):
        return []
    groups: dict = {}
    for b in blocks(ctx.events):
        if (key := key_of(b)) in ctx.attention_times:
            g = groups.setdefault((b["phase"], key), {"block": b, "calls": 0, "profiled_s": 0.0})
            g["calls"] += 1
            g["profiled_s"] += sum(ctx.call_time(b["phase"], str(e["op"]), e["input_shapes"]) for e in b["events"])
    out = []
    for (phase, key), g in groups.items():
        t_eager, t_sdpa, _ = ctx.attention_times[key]
        b, n = g["block"], g["calls"]
        out.append({"phase": phase, "ops": " → ".join(["matmul", *b["steps"], "matmul"]), "q_shape": str(b["q"]),
                    "k_shape": str(b["k"]), "v_shape": str(b["v"]), "calls": n, "profiled_s": g["profiled_s"],
                    "eager_s_per_call": t_eager, "sdpa_s_per_call": t_sdpa,
                    "speedup": t_eager / t_sdpa if t_sdpa > 0 else None, "saved_s": n * (t_eager - t_sdpa)})
    return sorted(out, key=lambda r: -r["saved_s"])


def is_hf(summary: dict) -> bool:
    """The run's target is an ``hf:`` model (``summary["target"]`` when known, else its on-disk name ``hf-...``)."""
    target = summary.get("target")
    return str(target).startswith("hf:") if target else str(summary.get("scenario") or "").startswith("hf-")


def find(ctx: Context) -> list[Finding]:
    if ctx.summary.get("compile") or ctx.summary.get("workload") == "train":
        return []
    found = rows(ctx)
    saved = sum(r["saved_s"] for r in found)
    basis = ctx.latency_s or ctx.profiled_s  # the times are un-profiled: against the un-profiled p50
    if not found or saved <= 0 or not basis:
        return []
    share, calls = saved / basis, sum(r["calls"] for r in found)
    before = sum(r["calls"] * r["eager_s_per_call"] for r in found)
    profiled = sum(r["profiled_s"] for r in found)
    arithmetic = (
        f"{calls} eager attention blocks ({len(found)} shapes) timed on this machine both ways (fastest of {ROUNDS} "
        f"rounds of up to {CALLS} calls): {seconds(before)} eager, {seconds(before - saved)} as "
        f"scaled_dot_product_attention per iteration; saved {seconds(saved)} = {percent(share)} of the latency p50 "
        f"{seconds(basis)} (other ops assumed unchanged). Largest: q {found[0]['q_shape']} x{found[0]['calls']}, "
        f"{found[0]['speedup'] or 0:.2f}x.")
    hf = is_hf(ctx.summary)
    f = Finding(id="attention:sdpa", family="attention", phase=None,
                title=f"{calls} eager attention block{'s' if calls != 1 else ''} faster as scaled_dot_product_attention "
                      "(measured here)",
                evidence=found, evidence_columns=COLUMNS, time_s=profiled,
                time_share=profiled / ctx.profiled_s if ctx.profiled_s else 0.0, saved_share=share, saved_s=saved,
                arithmetic=arithmetic,
                change=("the model's attention as torch.nn.functional.scaled_dot_product_attention "
                        "(--attn-implementation sdpa)" if hf else "use torch.nn.functional.scaled_dot_product_attention"),
                ab_side=SIDE if hf else None, ab=ctx.ab(SIDE) if hf else None, needs_code_change=not hf)
    return [f] if share >= MIN_SAVED_SHARE else []
