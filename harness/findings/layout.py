"""Memory layout: 2-D convolutions (and poolings) in contiguous (NCHW) format where channels_last (NHWC) is faster.

There is no formula for how much faster oneDNN (CPU) or cuDNN (GPU) runs a convolution in channels_last:
it depends on the shape, the kernel the library picks and the thread count. So it is **measured** on the
run's own shapes, in the run's process, after the run (:func:`measure`): each distinct ``conv2d`` of the
counter's events is rebuilt (input, weight, bias; stride and padding recovered from its MACs, groups
from the channel counts), and each ``max_pool2d``/``avg_pool2d`` (kernel from its counted FLOPs per output
element, stride and padding from its output size: eager max_pool2d on NCHW runs at under 1 GB/s on one
thread here, 12x slower than on NHWC), and timed both ways, ``ROUNDS`` rounds of up to ``CALLS`` calls after a warm-up call (:func:`harness.findings.timing.fastest`),
the fastest round kept, within ``BUDGET_S`` seconds in all (poolings first, then the largest convolutions;
shapes left unmeasured are assumed unchanged). The family (:func:`find`) is then arithmetic on those (un-profiled) times,
against the un-profiled latency p50::

    saved = sum over op shapes of  calls x (t_contiguous - t_channels_last)   (measured per call)

(the op's profiled time is not used: both layouts are timed alike, outside the profiler).
Other ops are assumed unchanged (batch_norm and element-wise ops on NHWC, and the conversions a model's
``.contiguous()`` calls make, are not in it).
Verified by ``ab X X:channels_last``. A compiled (Inductor lays convolutions out channels_last itself,
``layout_optimization``) or channels_last run gets no finding.
"""
from __future__ import annotations

from typing import Any

from ..core.units import percent, seconds
from .context import Context, tensor_shapes
from .model import MIN_SAVED_SHARE, Finding
from .timing import BUDGET_S, CALLS, ROUNDS, fastest, within_budget

COLUMNS = ("op", "input_shapes", "stride", "padding", "groups", "calls", "contiguous_s_per_call",
           "channels_last_s_per_call", "speedup", "saved_s")


def op_args(event: dict) -> dict | None:
    """The arguments of a conv2d (:func:`conv_args`) or 2-D pooling (:func:`pool_args`) event; None for others."""
    op = str(event.get("op"))
    if "conv" in op:
        return conv_args(event)
    if op.rsplit("::", 1)[-1] in ("max_pool2d", "avg_pool2d"):
        return pool_args(event)
    return None


def pool_args(event: dict) -> dict | None:
    """``{x, kernel, stride, padding}`` of a max/avg_pool2d event: the output's elements are its bytes less the
    input's (at 4 B), the kernel's area its other FLOPs per output element (the counter's formula: one
    compare or add per window element); stride and padding (``k // 2`` or 0) as for a convolution."""
    shapes = tensor_shapes(event.get("input_shapes"))
    if not shapes or len(shapes[0]) != 4:
        return None
    n, c, h, w = shapes[0]
    size = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}.get(str(event.get("dtype")).removeprefix("torch."), 4)
    out = (float(event.get("bytes") or 0) - n * c * h * w * size) / size
    k = round((float(event.get("other_flops") or 0) / out) ** 0.5) if out > 0 else 0
    for pad in dict.fromkeys((k // 2, 0)):
        for stride in (k, 1, 2, 3):
            ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
            if k > 0 and ho > 0 and n * c * ho * wo == out:
                return {"op": str(event["op"]).rsplit("::", 1)[-1], "x": [n, c, h, w], "kernel": k, "stride": stride,
                        "padding": pad, "groups": None}
    return None


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
                return {"op": "conv2d", "x": [n, c, h, w], "w": [o, cg, kh, kw], "bias": bias, "stride": stride, "padding": pad,
                        "groups": c // cg}
    return None


def measure(events: Any, dtype: str = "float32", device: str = "cpu", budget_s: float = BUDGET_S) -> dict:
    """``{key_of(event): (contiguous s/call, channels_last s/call, args)}`` for the events' distinct conv2d and
    pooling shapes within ``budget_s`` seconds: poolings first (few, quick to time, and where the layout
    matters most: resnet50's one max_pool2d took 5.25 ms contiguous and 0.37 ms channels_last on one thread
    here, against 1.4 ms saved over all its 53 convolutions), then convolutions, the most MACs + bytes first."""
    import torch

    seen: dict = {}
    for e in events.to_dict("records") if len(events) else []:
        if (args := op_args(e)) is not None:
            size = float(e.get("macs") or 0) + float(e.get("bytes") or 0)
            seen.setdefault(key_of(e), ((args["op"] == "conv2d", -size), args))
    dt = getattr(torch, dtype, torch.float32)
    ordered = [(key, args) for key, (_, args) in sorted(seen.items(), key=lambda kv: kv[1][0])]
    return within_budget(ordered, lambda args: (*_time_both(args, dt, device), args), budget_s)


def _call(torch: Any, a: dict, dt: Any, device: str, channels_last: bool) -> Any:
    """A no-argument function running the op once in the layout asked for."""
    import torch.nn.functional as F

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(a["x"], dtype=dt, device=device).to(memory_format=fmt)
    if a["op"] != "conv2d":
        pool = F.max_pool2d if a["op"] == "max_pool2d" else F.avg_pool2d
        return lambda: pool(x, a["kernel"], a["stride"], a["padding"])
    w = torch.randn(a["w"], dtype=dt, device=device).to(memory_format=fmt)
    b = torch.randn(a["w"][0], dtype=dt, device=device) if a["bias"] else None
    return lambda: F.conv2d(x, w, b, a["stride"], a["padding"], 1, a["groups"])


def _time_both(a: dict, dt: Any, device: str) -> tuple[float, float]:
    """Seconds per call of the op contiguous, then channels_last (:func:`harness.findings.timing.fastest`)."""
    import torch

    return (fastest(_call(torch, a, dt, device, False), device), fastest(_call(torch, a, dt, device, True), device))


def key_of(event: dict) -> str:
    """``aten::conv2d [[1, 3, 224, 224], [24, 3, 3, 3]]``: an op and its tensor shapes."""
    return f"{event['op']} {tensor_shapes(event['input_shapes'])}"


def rows(ctx: Context) -> list[dict]:
    """One row per measured conv shape: its calls per iteration (the counter's events) and both times."""
    if not ctx.layout_times or not len(ctx.events):
        return []
    calls: dict = {}
    for e in ctx.events.to_dict("records"):
        key = key_of(e)
        if key in ctx.layout_times:
            calls[(str(e["op"]), key)] = calls.get((str(e["op"]), key), 0) + 1
    out = []
    for (op, key), n in calls.items():
        t_nchw, t_nhwc, a = ctx.layout_times[key]
        out.append({"op": op, "input_shapes": key.split(" ", 1)[1], "stride": a["stride"], "padding": a["padding"],
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
    basis = ctx.latency_s or ctx.profiled_s  # the times are un-profiled: against the un-profiled p50
    share = saved / basis
    arithmetic = (
        f"{sum(r['calls'] for r in found)} conv2d/pooling calls ({len(found)} shapes) timed on this machine in both layouts "
        f"(fastest of {ROUNDS} rounds of up to {CALLS} calls): {seconds(before)} contiguous, {seconds(before - saved)} "
        f"channels_last per iteration; saved {seconds(saved)} = {percent(share)} of the latency p50 "
        f"{seconds(basis)} (other ops assumed unchanged). Largest: {found[0]['input_shapes']} "
        f"x{found[0]['calls']}, {found[0]['speedup'] or 0:.2f}x.")
    f = Finding(id="layout:channels_last", family="layout", phase=None,
                title=(f"{len(found)} convolution/pooling shape{'s run' if len(found) != 1 else ' runs'} faster in "
                       "channels_last (measured here)"),
                evidence=found, evidence_columns=COLUMNS, time_s=before,
                time_share=before / basis, saved_share=share, saved_s=saved,
                arithmetic=arithmetic, change="model and input in channels_last (model.to(memory_format=torch."
                "channels_last), --channels-last)", ab_side="channels_last", ab=ctx.ab("channels_last"))
    return [f] if share >= MIN_SAVED_SHARE else []
