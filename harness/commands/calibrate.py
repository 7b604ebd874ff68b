"""``python -m harness calibrate [--force] [--json] [--threads N]``: measure this CPU's peak.

Measures each dtype's fastest path (vector FMA for fp32/fp64; AMX tiles, avx512_bf16 and
torch.mm for bf16/fp16 where native; AMX or VNNI for int8, as integer ops/s), L1/L2/L3 and
memory bytes/s and the sustained clock in a few seconds, and caches the
result per CPU model and thread count (``$HARNESS_CACHE_DIR`` or ``~/.cache/harness``);
later runs use it as their CPU peak (``peak_source: calibrated``). See
:mod:`harness.hardware.calibration` for the method.
"""
from __future__ import annotations

import argparse
import json

from ..errors import HarnessError
from ..core.units import si

from ..core.dtypes import SHORT


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate", help="measure this CPU's peak FLOP/s, memory bandwidth and clock (cached)",
        description="Measure this CPU's peak FLOP/s on each dtype's fastest path (FMA loops for fp32/fp64; "
                    "AMX tiles, avx512_bf16 and torch.mm for bf16/fp16 where native; AMX/VNNI int8 ops/s), "
                    "L1/L2/L3 and memory bandwidth with read/copy loops and the sustained clock with a "
                    "dependent add chain; cache the result per CPU model and thread count so runs use it.")
    p.add_argument("--force", action="store_true", help="remeasure even if a cached result exists")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--threads", type=int, default=None,
                   help="threads to measure with (default: torch.get_num_threads(), what runs use)")
    p.set_defaults(func=main)
    return p


def _rate_lines(result: dict) -> list[str]:
    """One line per measured dtype: rate, path, and one thread's FLOP (or op) per cycle."""
    clock = result.get("clock_hz_one_thread") or result.get("clock_hz")
    lines = []
    for key, unit, per_key in (("flop_per_s", "FLOP/s", "flop_per_cycle_per_thread"),
                               ("int_op_per_s", "OP/s", "int_op_per_cycle_per_thread")):
        for dt, rate in result.get(key, {}).items():
            per = result.get(per_key, {}).get(dt)
            how = f"  (one thread: {per:.1f} {unit[:-2]}/cycle at {si(clock, 'Hz')})" if per and clock else ""
            path = result.get("measured_path", {}).get(dt)
            lines.append(f"  {SHORT.get(dt, dt):<6} {si(rate, unit):>14}{how}" + (f"  [{path}]" if path else ""))
    return lines


def _memory_lines(result: dict) -> list[str]:
    """Cache levels (capacity, read/copy) then main memory."""
    lines = []
    for level, c in result.get("caches", {}).items():
        lines.append(f"  {level:<6} {si(c['bytes_per_s'], 'B/s'):>14}  (read {si(c['read_bytes_per_s'], 'B/s')}, "
                     f"copy {si(c['copy_bytes_per_s'], 'B/s')}; {si(c['working_set_bytes_per_thread'], 'B')} per "
                     f"thread of {si(c['capacity_bytes'], 'B')})")
    bw = result.get("bandwidth", {})
    if result.get("bytes_per_s"):
        lines.append(f"  {'DRAM':<6} {si(result['bytes_per_s'], 'B/s'):>14}  (read {si(bw.get('read_bytes_per_s'), 'B/s')}, "
                     f"copy {si(bw.get('copy_bytes_per_s'), 'B/s')}; {si(bw.get('buffer_bytes'), 'B')} buffers)")
    if not result.get("caches"):
        lines.append("  caches: not measured (no cache sizes in /sys or no C kernel): the roofline draws DRAM only")
    return lines


def render(result: dict, derived_note: str | None = None) -> str:
    threads = result.get("threads")
    lines = [f"CPU: {result['key']['cpu']}, {threads} threads"
             + (f" - measured in {result['elapsed_s']:.1f} s" if not result.get("cached") else
                f" - cached result from {result.get('created')} (--force to remeasure)")]
    lines += _rate_lines(result)
    for what, why in result.get("skipped", {}).items():
        lines.append(f"  {SHORT.get(what, what):<6} skipped: {why}")
    clock = result.get("clock_hz")
    if clock:
        lines.append(f"  {'clock':<6} {si(clock, 'Hz'):>14}  sustained, all threads (dependent integer adds)")
    lines += _memory_lines(result)
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
    print(_in_use(result["threads"]))
    return 0


def _in_use(threads: int) -> str:
    """What runs at this thread count now use, per dtype (calibrated or, where the fastest path
    was not measured, derived)."""
    from ..hardware import peak_for

    cells = []
    for dt in ("float32", "float64", "bfloat16", "float16", "int8"):
        p = peak_for("cpu", dt, threads=threads)
        rate = p.int_op_per_s if dt == "int8" else p.flop_per_s
        if rate:
            cells.append(f"{SHORT[dt]} {si(rate, 'OP/s' if dt == 'int8' else 'FLOP/s')} ({p.source})")
    return "  runs use: " + ", ".join(cells)
