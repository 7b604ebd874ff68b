"""``python -m harness devices [--json]``: every known device peak, plus this machine's.

Figures are dense peaks. ``peak_flop_per_s`` holds floating-point rates keyed by dtype
(float64, float32, tfloat32, bfloat16, float16, float8); int8 is an *integer* rate
(TOPS) and sits apart in ``peak_int_op_per_s`` so nothing adds it to FLOP/s.
"""
from __future__ import annotations

import argparse
import json

from ..errors import HarnessError
from ..core.units import si

COLUMNS = (("float64", "fp64"), ("float32", "fp32"), ("tfloat32", "tf32"), ("bfloat16", "bf16"),
           ("float16", "fp16"), ("float8", "fp8"))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "devices", help="list known device peaks (FLOP/s, memory bandwidth) and this machine's",
        description="List the peak FLOP/s (dense, per dtype), int8 ops/s and memory bandwidth of every "
                    "device in harness's table, plus this machine's CPU (calibrated if `harness calibrate` "
                    "has run, else derived from /proc/cpuinfo).")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads to count for this machine (default: torch.get_num_threads())")
    p.set_defaults(func=main)
    return p


def _cell(v) -> str:
    return "-" if v is None else si(v, "")


def render_table(rows: list[dict]) -> str:
    head = ["device"] + [short for _, short in COLUMNS] + ["int8 OP/s", "memory B/s", "source"]
    body = []
    refs: list[str] = []
    for r in rows:
        flops = r.get("peak_flop_per_s") or {}
        ints = r.get("peak_int_op_per_s") or {}
        if r.get("this_machine"):
            src = r.get("peak_source", "?")
        else:
            if r["source"] not in refs:
                refs.append(r["source"])
            src = f"table [{refs.index(r['source']) + 1}]"
        body.append([r["name"]] + [_cell(flops.get(k)) for k, _ in COLUMNS]
                    + [_cell(ints.get("int8")), _cell(r.get("mem_bandwidth_bytes_per_s")), src])
    from ..core.text import table

    lines = ["Dense peaks in FLOP/s (SI prefixes: T = 1e12, G = 1e9); int8 in integer ops/s; "
             "'-' = not known/not supported.", ""]
    lines += table([str(c) for c in head], [[str(c) for c in row] for row in body],
                   right=set(range(1, len(head) - 1)))
    lines.append("")
    for r in rows:
        if r.get("this_machine") and r.get("device_type") == "cpu":
            lines.append(f"{r['name']}: {r['notes'].get('float32')}")
            lines.append(_levels_line(r))
    lines += [f"[{i + 1}] {ref}" for i, ref in enumerate(refs)]
    return "\n".join(lines)


def _levels_line(row: dict) -> str:
    """``memory levels: L1 190 GB/s (<= 64.0 kB), ..., DRAM 14.5 GB/s`` or why there are none."""
    bw, sizes = row.get("cache_bytes_per_s") or {}, row.get("cache_sizes_bytes") or {}
    if not bw:
        hint = row.get("calibrate_hint")
        return "  memory levels: unknown until calibrated" + (f" (`{hint}`)" if hint else "")
    cells = [f"{lv} {si(v, 'B/s')}" + (f" (<= {si(sizes[lv], 'B')})" if lv in sizes else "") for lv, v in bw.items()]
    return "  memory levels: " + ", ".join(cells) + ("" if len(bw) > 1 else " (caches not measured: DRAM only)")


def main(args: argparse.Namespace) -> int:
    from ..hardware import device_table

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise HarnessError(f"--threads must be at least 1, got {threads}")
    rows = device_table(include_this_machine=True, threads=threads)
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
    else:
        print(render_table(rows))
    return 0
