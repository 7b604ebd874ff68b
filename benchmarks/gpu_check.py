"""One command that verifies the CUDA path on a machine with a GPU (issue: ceilings that are ceilings).

    python benchmarks/gpu_check.py                 # on a GPU machine: vgg16 / resnet50 fp32 (TF32 on and off),
                                                   # bf16, tiny_gpt bf16; exits 1 on any failed check
    python benchmarks/gpu_check.py --device cpu    # the same checks on the CPU (a self-test of this script)

Each run goes through ``harness.run_scenario`` and is checked for: the profiled steps counted
(3, not 6: device-side copies of record_function ranges are not steps), an aligned join,
per-op FLOPs summing to the totals, per-op time summing to the profiled total, no ceiling
exceeded (utilization <= 1 for the run, every op and every module), the peak row used, peak
memory against ``torch.cuda.max_memory_allocated``, and the harness's p50 against a plain
``torch.cuda.Event`` loop (ratio). Compiled rows (``--compile``: resnet50 bf16 default, tiny_gpt bf16
reduce-overhead, whose CUDA graphs replay kernels without a CPU launch) check that kernels.csv has the
Triton kernels, that >= 95 % of kernel time is attributed to modules, that the counted FLOPs are the eager
model's, exactly, and print the compile time, the eager-vs-compiled speedup with its interval and the
kernel kinds (generated / extern / replay / unattributed). It prints one table and finishes well under
5 minutes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import torch  # noqa: E402

import harness  # noqa: E402
from harness.pipeline import prepare, scenario  # noqa: E402
from harness.core.units import si  # noqa: E402
from harness.pipeline.profiling import ProfileConfig  # noqa: E402

GPU_PLAN = [("vgg16", "float32", "tf32"), ("vgg16", "float32", "ieee"), ("vgg16", "bfloat16", None),
            ("resnet50", "float32", "tf32"), ("resnet50", "float32", "ieee"), ("resnet50", "bfloat16", None),
            ("tiny_gpt", "bfloat16", None)]
CPU_PLAN = [("resnet50", "float32", None), ("tiny_gpt", "float32", None), ("transformer_encoder", "float32", None)]
# compiled rows (issue 21): Triton kernels joined to their fused ops; reduce-overhead replays CUDA graphs
GPU_COMPILED = [("resnet50", "bfloat16", "default"), ("tiny_gpt", "bfloat16", "reduce-overhead")]
CPU_COMPILED = [("tiny_gpt", "float32", "default")]


def set_tf32(mode: str | None) -> None:
    """torch 2.14's precision API for CUDA matmuls and cuDNN convolutions (``tf32`` or ``ieee``)."""
    if mode is None or not torch.cuda.is_available():
        return
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode


def plain_p50(name: str, device: str, dtype: str, iters: int) -> float:
    """Median of a plain timing loop: CUDA events on a GPU, perf_counter on the CPU."""
    p = prepare.prepare_scenario(scenario.load(name), device=device, dtype=dtype)
    p.model.eval()  # as the forward workload runs it (fast paths need eval + inference mode)
    samples = []
    with torch.inference_mode():
        for _ in range(3):
            p.call(p.model)
        for _ in range(iters):
            if p.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                p.call(p.model)
                end.record()
                torch.cuda.synchronize()
                samples.append(start.elapsed_time(end) * 1e-3)
            else:
                t0 = time.perf_counter()
                p.call(p.model)
                samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def checks(run, active: int) -> dict[str, bool]:
    s, ops, mods = run.summary, run.ops, run.modules
    op_rows = ops[ops.kind == "op"]
    util_ok = all(u <= 1.0 for u in list(op_rows.utilization.dropna()) + list(mods.utilization.dropna())
                  + ([s["utilization"]] if s.get("utilization") is not None else []))
    out = {
        "steps": s["profiled"]["steps"] == active,
        "aligned": bool(s["coverage"]["calls_aligned"]),
        "flops_sum": int(round(ops.flops.sum())) == s["flops"],
        "time_sum": abs(ops.self_time_s.sum() - s["profiled"]["time_per_forward_s"]) <= 1e-9 + 1e-6 * s["profiled"]["time_per_forward_s"],
        "util<=1": util_ok and not s.get("peak_exceeded"),
    }
    if s["device"] == "cuda":
        out["device_time"] = s["profiled"]["time_source"] == "cuda"
    return out


def one(name: str, dtype: str, tf32: str | None, device: str, iters: int, logdir: str) -> dict:
    set_tf32(tf32)
    active = 3
    run = harness.run_scenario(name, device=device, dtype=dtype, iters=iters, warmup=3, logdir=logdir,
                               profile_config=ProfileConfig(active=active))
    s = run.summary
    row = {"scenario": name, "dtype": dtype, "tf32": tf32 or "-", "p50_s": s["latency_s"]["p50"],
           "plain_p50_s": plain_p50(name, device, dtype, iters), "util": s.get("utilization"),
           "peak": f"{si(s.get('peak_flop_per_s'), 'FLOP/s')} ({s.get('peak_source')})",
           "peak_memory_bytes": s.get("peak_memory_bytes"), **checks(run, active)}
    mem = s.get("memory") or {}
    row["measured_peak_bytes"] = mem.get("peak_bytes")  # memory by category (issue 22)
    row["forecast_peak_bytes"] = (mem.get("forecast") or {}).get("peak_bytes")
    if device == "cuda":
        row["max_memory_allocated"] = torch.cuda.max_memory_allocated()
    row["ratio"] = row["p50_s"] / row["plain_p50_s"]
    return row


COMPILED_CHECKS = ("kernels", "in_modules>=95%", "flops=eager", "vs_eager")


def compiled_checks(run, eager_flops: int) -> dict[str, bool]:
    """A compiled run: every kernel has a row; >= 95 % of kernel time in modules; replayed/unattributed kernels
    listed, not folded; the counted work is the eager model's, exactly; eager vs compiled timed."""
    s, k = run.summary, run.kernels
    cov = s.get("coverage") or {}
    return {"kernels": len(k) > 0 and bool((k.kind == "generated").any()),
            "in_modules>=95%": (cov.get("share_of_kernel_time_in_modules") or 0) >= 0.95,
            "flops=eager": s["flops"] == eager_flops,
            "vs_eager": "ratio" in (s["compile"].get("vs_eager") or {})}


def compiled_one(name: str, dtype: str, mode: str, device: str, iters: int, logdir: str) -> dict:
    run = harness.run_scenario(name, device=device, dtype=dtype, iters=iters, warmup=3, logdir=logdir, compile=mode,
                               vs_eager_s=10)
    eager = harness.count(*_model_and_inputs(name, device, dtype))
    s, v = run.summary, run.summary["compile"]["vs_eager"]
    kinds = run.kernels.kind.value_counts().to_dict() if len(run.kernels) else {}
    return {"scenario": f"{name} --compile {mode}", "dtype": dtype, "compile_s": s["compile"]["compile_s"],
            "speedup": f"{v.get('speedup', 0):.3f} [{v.get('speedup_low', 0):.3f}, {v.get('speedup_high', 0):.3f}]",
            "kinds": kinds, "fusion": s["compile"].get("fusion"), **compiled_checks(run, int(eager.flops))}


def _model_and_inputs(name: str, device: str, dtype: str):
    p = prepare.prepare_scenario(scenario.load(name), device=device, dtype=dtype)
    p.model.eval()
    return p.model, p.inputs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --device cpu for a self-test of the checks")
        return 2
    plan = GPU_PLAN if args.device == "cuda" else CPU_PLAN
    if args.device == "cpu":
        print("no CUDA device was found: what runs is the CPU self-test of the checks, not a GPU check"
              if not torch.cuda.is_available() else "--device cpu: the CPU self-test of the checks, not a GPU check",
              flush=True)
    t0 = time.perf_counter()
    if args.device == "cpu":  # a CPU's derived peak is a formula: measure the ceiling the checks hold runs to
        from harness.hardware import calibrate

        calibrate(threads=torch.get_num_threads())
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for name, dtype, tf32 in plan:
            rows.append(one(name, dtype, tf32, args.device, args.iters, logdir))
            r = rows[-1]
            flags = " ".join(f"{k}={'ok' if r[k] else 'FAIL'}" for k in ("steps", "aligned", "flops_sum", "time_sum",
                                                                          "util<=1", "device_time") if k in r)
            print(f"{name:<20} {dtype:<9} tf32={r['tf32']:<5} p50 {r['p50_s'] * 1e3:8.2f} ms  plain {r['plain_p50_s'] * 1e3:8.2f} ms"
                  f"  ratio {r['ratio']:.3f}  util {r['util'] or 0:6.1%}  peak {r['peak']}  {flags}  memory: "
                  f"measured {si(r['measured_peak_bytes'], 'B')}, forecast {si(r['forecast_peak_bytes'], 'B')}"
                  + (f", max allocated {si(r['max_memory_allocated'], 'B')}" if "max_memory_allocated" in r else ""),
                  flush=True)
        for name, dtype, mode in (GPU_COMPILED if args.device == "cuda" else CPU_COMPILED):
            r = compiled_one(name, dtype, mode, args.device, args.iters, logdir)
            flags = " ".join(f"{k}={'ok' if r[k] else 'FAIL'}" for k in COMPILED_CHECKS)
            print(f"{r['scenario']:<36} {dtype:<9} compile {r['compile_s']:.1f} s  speedup {r['speedup']}  kernels "
                  f"{r['kinds']}  {flags}", flush=True)
            rows.append(r)
    failed = [r for r in rows if not all(r[k] for k in (COMPILED_CHECKS if "compile_s" in r else (
        "steps", "aligned", "flops_sum", "time_sum", "util<=1") + (("device_time",) if "device_time" in r else ())))]
    where = (f"on {torch.cuda.get_device_name()}" if args.device == "cuda"
             else "on the CPU (self-test only: no GPU was checked)")
    print(f"{len(rows) - len(failed)}/{len(rows)} runs passed every check in {time.perf_counter() - t0:.0f} s {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
