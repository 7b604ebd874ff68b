"""Memory layout: 2-D convolutions in contiguous (NCHW) format where channels_last (NHWC) is the faster path.

There is no formula for how much faster oneDNN (CPU) or cuDNN (GPU) runs a convolution in channels_last:
it depends on the shape, the kernel the library picks and the thread count. So it is **measured** on the
run's own shapes, in the run's process, after the run (:func:`measure`): each distinct ``conv2d`` of the
counter's events is rebuilt (input, weight, bias; stride and padding recovered from its MACs, groups
from the channel counts) and timed both ways, ``ROUNDS`` rounds of ``CALLS`` calls after a warm-up,
the fastest round kept, within ``BUDGET_S`` seconds in all (the largest convolutions first; shapes left
unmeasured are assumed unchanged). The family (:func:`find`) is then arithmetic on those times::

    saved = sum over conv shapes of  calls x (t_contiguous - t_channels_last)   (measured per call)

against the profiled iteration (the conv's profiled time is not used: both layouts are timed alike).
Other ops are assumed unchanged (a layout conversion per ``.contiguous()`` in the model is not in it).
Verified by ``ab X X:channels_last``. A compiled (Inductor lays convolutions out channels_last itself,
``layout_optimization``) or channels_last run gets no finding.
"""
from __future__ import annotations

import time
from typing import Any

from ..core.units import percent, seconds
from .context import Context, tensor_shapes
from .model import MIN_SAVED_SHARE, Finding

ROUNDS = 3
CALLS = 3
BUDGET_S = 3.0
COLUMNS = ("op", "input_shapes", "stride", "padding", "groups", "calls", "contiguous_s_per_call",
           "channels_last_s_per_call", "speedup", "saved_s")


def conv_args(event: dict) -> dict | None:
    """``{x, w, bias, stride, padding, groups}`` shapes of a conv2d event: stride and padding (``k // 2``
    or 0) are the pair whose output size gives the event's MACs; None when none does."""
    shapes = tensor_shapes(event.get("input_shapes"))
    if "conv" not in str(event.get("op")) or len(shapes) < 2 or len(shapes[0]) != 4 or len(shapes[1]) != 4:
        return None
    (n, c, h, w), (o, cg, kh, kw) = shapes[0], shapes[1]
    bias = len(shapes) > 2 and shapes[2] == [o]
    macs = float(event.get("macs") or 0)
    for pad in dict.fromkeys((kh // 2, 0)):
        for stride in (1, 2, 3, 4):
            ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
            if ho > 0 and wo > 0 and n * o * ho * wo * cg * kh * kw == macs:
                return {"x": [n, c, h, w], "w": [o, cg, kh, kw], "bias": bias, "stride": stride, "padding": pad,
                        "groups": c // cg}
    return None


def measure(events: Any, dtype: str = "float32", device: str = "cpu", budget_s: float = BUDGET_S) -> dict:
    """``{str(input_shapes): (contiguous s/call, channels_last s/call, args)}`` for the events' distinct conv2d
    shapes, the most MACs first, within ``budget_s`` seconds."""
    import torch

    seen: dict = {}
    for e in events.to_dict("records") if len(events) else []:
        if (args := conv_args(e)) is not None:
            seen.setdefault(str(tensor_shapes(e["input_shapes"])), (float(e.get("macs") or 0), args))
    out: dict = {}
    t_end = time.perf_counter() + budget_s
    with torch.inference_mode():
        for key, (_, args) in sorted(seen.items(), key=lambda kv: -kv[1][0]):
            if time.perf_counter() > t_end:
                break
            out[key] = (*_time_both(torch, args, getattr(torch, dtype, torch.float32), device), args)
    return out


def _time_both(torch: Any, a: dict, dt: Any, device: str) -> tuple[float, float]:
    import torch.nn.functional as F

    x = torch.randn(a["x"], dtype=dt, device=device)
    w = torch.randn(a["w"], dtype=dt, device=device)
    b = torch.randn(a["w"][0], dtype=dt, device=device) if a["bias"] else None
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    for xx, ww in ((x, w), (x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last))):
        best = float("inf")
        for _ in range(ROUNDS + 1):  # the first round warms up (oneDNN picks and caches its kernel)
            t0 = time.perf_counter()
            for _ in range(CALLS):
                F.conv2d(xx, ww, b, a["stride"], a["padding"], 1, a["groups"])
            sync()
            best = min(best, (time.perf_counter() - t0) / CALLS) if _ else best
        times.append(best)
    return times[0], times[1]


def rows(ctx: Context) -> list[dict]:
    """One row per measured conv shape: its calls per iteration (the counter's events) and both times."""
    if not ctx.layout_times or not len(ctx.events):
        return []
    calls: dict = {}
    for e in ctx.events.to_dict("records"):
        key = str(tensor_shapes(e["input_shapes"]))
        if key in ctx.layout_times:
            calls[(str(e["op"]), key)] = calls.get((str(e["op"]), key), 0) + 1
    out = []
    for (op, key), n in calls.items():
        t_nchw, t_nhwc, a = ctx.layout_times[key]
        out.append({"op": op, "input_shapes": key, "stride": a["stride"], "padding": a["padding"],
                    "groups": a["groups"], "calls": n, "contiguous_s_per_call": t_nchw,
                    "channels_last_s_per_call": t_nhwc, "speedup": t_nchw / t_nhwc if t_nhwc > 0 else None,
                    "saved_s": n * (t_nchw - t_nhwc)})
    return sorted(out, key=lambda r: -r["saved_s"])


def find(ctx: Context) -> list[Finding]:
    if ctx.summary.get("compile") or ctx.summary.get("channels_last") or ctx.summary.get("workload") == "train":
        return []
    found = rows(ctx)
    saved = sum(r["saved_s"] for r in found)
    if not found or saved <= 0 or not ctx.profiled_s:
        return []
    before = sum(r["calls"] * r["contiguous_s_per_call"] for r in found)
    share = saved / ctx.profiled_s
    arithmetic = (
        f"{sum(r['calls'] for r in found)} conv2d calls ({len(found)} shapes) timed on this machine in both layouts "
        f"(fastest of {ROUNDS} rounds of {CALLS} calls): {seconds(before)} contiguous, {seconds(before - saved)} "
        f"channels_last per iteration; saved {seconds(saved)} = {percent(share)} of the profiled "
        f"{seconds(ctx.profiled_s)} (other ops assumed unchanged). Largest: {found[0]['input_shapes']} "
        f"x{found[0]['calls']}, {found[0]['speedup'] or 0:.2f}x.")
    f = Finding(id="layout:channels_last", family="layout", phase=None,
                title=f"{len(found)} convolution shapes run faster in channels_last (measured here)",
                evidence=found, evidence_columns=COLUMNS, time_s=before,
                time_share=before / ctx.profiled_s, saved_share=share, saved_s=share * (ctx.latency_s or 0.0),
                arithmetic=arithmetic, change="model and input in channels_last (model.to(memory_format=torch."
                "channels_last), --channels-last)", ab_side="channels_last", ab=ctx.ab("channels_last"))
    return [f] if share >= MIN_SAVED_SHARE else []
