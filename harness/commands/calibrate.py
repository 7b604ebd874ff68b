"""``python -m harness calibrate [--force] [--json] [--threads N]``: measure this CPU's peak.

Measures FMA-bound FLOP/s (fp32, fp64; bf16/fp16 where the CPU has native
instructions), memory bytes/s and the sustained clock in a few seconds, and caches the
result per CPU model and thread count (``$HARNESS_CACHE_DIR`` or ``~/.cache/harness``);
later runs use it as their CPU peak (``peak_source: calibrated``). See
:mod:`harness.hardware.calibration` for the method.
"""
from __future__ import annotations

import argparse
import json

from ..errors import HarnessError
from ..core.units import si

from ..hardware.peak import SHORT


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate", help="measure this CPU's peak FLOP/s, memory bandwidth and clock (cached)",
        description="Measure this CPU's peak FLOP/s with an FMA-bound C loop (fp32, fp64, bf16/fp16 where "
                    "native), memory bandwidth with a large copy/read and the sustained clock with a "
                    "dependent add chain; cache the result per CPU model and thread count so runs use it.")
    p.add_argument("--force", action="store_true", help="remeasure even if a cached result exists")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--threads", type=int, default=None,
                   help="threads to measure with (default: torch.get_num_threads(), what runs use)")
    p.set_defaults(func=main)
    return p


def render(result: dict, derived_note: str | None = None) -> str:
    threads = result.get("threads")
    lines = [f"CPU: {result['key']['cpu']}, {threads} threads"
             + (f" - measured in {result['elapsed_s']:.1f} s" if not result.get("cached") else
                f" - cached result from {result.get('created')} (--force to remeasure)")]
    clock = result.get("clock_hz")
    for dt, rate in result.get("flop_per_s", {}).items():
        per = result.get("flop_per_cycle_per_thread", {}).get(dt)
        busy = result.get("concurrent_threads", threads)
        how = f"  = {busy} thread{'s' if busy != 1 else ''} x {per:.1f} FLOP/cycle x {si(clock, 'Hz')}" if per and clock else ""
        lines.append(f"  {SHORT.get(dt, dt):<6} {si(rate, 'FLOP/s'):>14}{how}")
    for what, why in result.get("skipped", {}).items():
        lines.append(f"  {SHORT.get(what, what):<6} skipped: {why}")
    if clock:
        lines.append(f"  {'clock':<6} {si(clock, 'Hz'):>14}  sustained, all threads (dependent integer adds)")
    bw = result.get("bandwidth", {})
    if result.get("bytes_per_s"):
        lines.append(f"  {'memory':<6} {si(result['bytes_per_s'], 'B/s'):>14}  (read {si(bw.get('read_bytes_per_s'), 'B/s')}, "
                     f"copy {si(bw.get('copy_bytes_per_s'), 'B/s')}; {si(bw.get('buffer_bytes'), 'B')} buffers)")
    ref = result.get("reference", {}).get("sgemm_flop_per_s")
    if ref:
        lines.append(f"  {'sgemm':<6} {si(ref, 'FLOP/s'):>14}  torch.mm 1024^3 - a library ceiling, not the peak")
    for w in result.get("warnings", []):
        lines.append(f"  warning: {w}")
    if derived_note:
        lines.append(f"  without calibration (derived): {derived_note}")
    lines.append(f"  cache: {result.get('path')}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from ..hardware import calibrate
    from ..hardware.cpu import cpu_info, throughput_from_flags
    from ..hardware.formulas import cpu_peak_flop_per_s

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise HarnessError(f"--threads must be at least 1, got {threads}")
    result = calibrate(threads, force=getattr(args, "force", False))
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
        return 0
    info = cpu_info()
    tp = throughput_from_flags(info["flags"], info.get("vendor") or "", info.get("family"), info.get("model"))
    derived = None
    per, clock = tp.flop_per_cycle.get("float32"), info.get("clock_hz")
    if per and clock:
        cores = min(result["threads"], info.get("physical_cores") or result["threads"])
        derived = (f"{si(cpu_peak_flop_per_s(cores, per, clock), 'FLOP/s')} fp32 = {cores} core"
                   f"{'s' if cores != 1 else ''} x {per:g} "
                   f"FLOP/cycle ({tp.isa}) x {si(clock, 'Hz')} ({info.get('clock_source')})")
    print(render(result, derived))
    return 0
