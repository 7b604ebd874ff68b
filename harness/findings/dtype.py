"""Dtype: float32 matmul and convolution work on a device whose bfloat16 ceiling is higher.

For every float32 convolution and matmul-class op (``ops.csv``, per phase) the prediction keeps the
op's utilization and moves it to the bfloat16 ceiling of the same device (``Context.alternates``),
bounded below by its bytes halved at the bandwidth (bfloat16 moves half the bytes)::

    t_bf16 = max(t_fp32 x ceiling_fp32 / ceiling_bf16,  (bytes / 2) / bandwidth)

saved = sum of t_fp32 - t_bf16. The other ops are assumed unchanged. The harness makes the change
itself (``dtype=bfloat16``): verifiable. Numerics change too: check accuracy separately.

Only a **trusted** bfloat16 ceiling counts: a published one (``table``: GPUs) or a measured one
(``calibrated``). A CPU's derived bfloat16 figure (AMX tiles: 16x its float32 figure on the 2-vCPU host)
is no rate eager PyTorch reaches: on shufflenet_v2_x1_0 (batch 1, 1 thread) it predicted 0.547 and
bfloat16 measured 1.222 (slower), so a derived ceiling gives no finding.
"""
from __future__ import annotations

from ..core.units import percent, seconds, si
from ..hardware.ceilings import op_class
from .context import Context
from .model import MIN_SAVED_SHARE, Finding, shares

COLUMNS = ("phase", "op", "time_s", "flops", "bytes", "ceiling_flop_per_s", "bf16_ceiling_flop_per_s",
           "utilization", "predicted_s", "saved_s")
TARGET = "bfloat16"
TRUSTED = ("table", "calibrated")  # where a bfloat16 ceiling may come from (module docstring)


def rows(ctx: Context) -> list[dict]:
    alt = ctx.alternates.get(TARGET)
    ops = ctx.ops
    if alt is None or ctx.dtype != "float32" or not len(ops) or alt.source not in TRUSTED:
        return []
    out = []
    for r in ops[ops["kind"] == "op"].to_dict("records"):
        name, t, flops = str(r["name"]), float(r["self_time_s"] or 0), float(r.get("flops") or 0)
        if op_class(name) == "other" or flops <= 0 or t <= 0:
            continue
        c32, c16 = ctx.flop_ceiling(name), ctx.flop_ceiling(name, alt)
        if not c32 or not c16 or c16 <= c32:
            continue
        nbytes = float(r.get("bytes") or 0)
        bw, _ = ctx.bandwidth(nbytes / max(float(r.get("dispatch_calls") or 1), 1.0))
        after = max(t * c32 / c16, nbytes / 2 / bw if bw else 0.0)
        out.append({"phase": r.get("phase") if isinstance(r.get("phase"), str) else "", "op": name, "time_s": t,
                    "flops": flops, "bytes": nbytes, "ceiling_flop_per_s": c32, "bf16_ceiling_flop_per_s": c16,
                    "utilization": flops / t / c32, "predicted_s": after, "saved_s": max(t - after, 0.0)})
    return sorted(out, key=lambda r: -r["saved_s"])


def find(ctx: Context) -> list[Finding]:
    found = rows(ctx)
    if not found:
        return []
    time_s = sum(r["time_s"] for r in found)
    saved = sum(r["saved_s"] for r in found)
    top = found[0]
    arithmetic = (
        f"{len(found)} float32 matmul/conv ops take {seconds(time_s)}; at the same utilization on the bfloat16 "
        f"ceiling, bounded by half their bytes at the bandwidth: t x ceiling_fp32 / ceiling_bf16. Largest: "
        f"{top['op']} {seconds(top['time_s'])} x {si(top['ceiling_flop_per_s'], 'FLOP/s')} / "
        f"{si(top['bf16_ceiling_flop_per_s'], 'FLOP/s')} -> {seconds(top['predicted_s'])}. Total saved "
        f"{seconds(saved)} = {percent(saved / ctx.profiled_s if ctx.profiled_s else 0)} of the profiled iteration "
        f"(other ops assumed unchanged).")
    f = Finding(id="dtype:bfloat16", family="dtype", phase=None,
                title=f"float32 matmul/conv work on a device with a {si(top['bf16_ceiling_flop_per_s'] / top['ceiling_flop_per_s'])}x "
                      f"higher bfloat16 ceiling",
                evidence=found, evidence_columns=COLUMNS, arithmetic=arithmetic,
                change="run in bfloat16 (--dtype bfloat16, or autocast), after checking the accuracy",
                ab_side=f"dtype={TARGET}", ab=ctx.ab(f"dtype={TARGET}"), needs_code_change=False,
                **shares(time_s, saved, ctx.profiled_s, ctx.latency_s))
    return [f] if f.saved_share >= MIN_SAVED_SHARE else []
