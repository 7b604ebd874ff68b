"""Did compiling pay off? torch.compile (Inductor) against eager, per model, on this machine.

For each case, one ``python -m harness run X --compile`` (a fresh process, so a cold Inductor
cache unless it was run before: the ``cache`` column says which) and its record:

- ``compile_s``: setup + first iteration (tracing, lowering, C++ compilation, one run);
- ``eager p50`` / ``compiled p50`` / ``speedup [interval]``: the run's own eager-vs-compiled
  timing (``compile.vs_eager``: the same module with its compiled call switched off against itself
  compiled, ABBA blocks in one process, 98 % interval), its verdict;
- ``bytes saved``, ``kernels/iter`` and ``attributed``: what fusion did and how much of the compiled
  time the kernel-level join gives to modules (``compile.fusion`` and ``coverage``, when the run
  records them; ``n/a`` otherwise).

    PYTHONPATH=. python benchmarks/compile_report.py [--threads 2] [--vs-eager-s 10] [--only resnet18,tiny_gpt]

Prints a markdown table (README "Compiled models" holds one run of it).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.core.units import percent, seconds, si

CASES = [  # (label, target, extra flags)
    ("resnet18", "torchvision:resnet18", []),
    ("resnet50", "resnet50", []),
    ("mobilenet_v2", "mobilenet_v2", []),
    ("vit_b_16", "vit_b_16", []),
    ("tiny_gpt", "tiny_gpt", []),
    ("resnet18 train", "torchvision:resnet18", ["--workload", "train", "--batch-size", "2"]),
]


def run_case(target: str, extra: list[str], threads: int, vs_eager_s: float, logdir: Path) -> dict:
    """One compiled run in its own process; its summary.json."""
    cmd = [sys.executable, "-m", "harness", "run", target, "--compile", "--vs-eager-s", str(vs_eager_s),
           "--threads", str(threads), "--iters", "10", "--warmup", "2", "--active", "1", "--logdir", str(logdir),
           "--json", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    summary = json.loads(r.stdout)
    summary["_wall_s"] = time.perf_counter() - t0
    return summary


def row(label: str, s: dict) -> str:
    if "error" in s:
        return f"| {label} | failed: {s['error'][:120]} |" + " |" * 8
    c, v = s["compile"], s["compile"].get("vs_eager", {})
    fusion = c.get("fusion") or {}
    saved = fusion.get("bytes_saved")  # per iteration (README: "Kernels of a compiled run")
    kernels = (f"{fusion['eager_kernels']:.0f} → {fusion['compiled_kernels']:.0f}"
               if fusion.get("compiled_kernels") is not None else "n/a")
    attributed = (s.get("coverage") or {}).get("share_of_kernel_time_in_modules")
    speedup = (f"{v['speedup']:.3f} [{v['speedup_low']:.3f}, {v['speedup_high']:.3f}] {v['verdict']}"
               if "speedup" in v else v.get("skipped", "n/a"))
    return (f"| {label} | {c['compile_s']:.1f} s ({c['cache']}) | {seconds(v.get('eager_median_s'))} | "
            f"{seconds(v.get('compiled_median_s'))} | {speedup} | {c['graphs']} / "
            f"{sum(b['count'] for b in c['graph_breaks'])} | {si(saved, 'B') if saved is not None else 'n/a'} | "
            f"{kernels} | {percent(attributed) if attributed is not None else 'n/a'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vs-eager-s", type=float, default=10.0)
    ap.add_argument("--only", default="", help="comma-separated labels (default: all)")
    args = ap.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    print(f"threads {args.threads}, eager vs compiled {args.vs_eager_s:g} s per case\n")
    print("| model | compile (cache) | eager p50 | compiled p50 | speedup [98 % interval] verdict | graphs / breaks "
          "| bytes saved / iter | kernels / iter (eager → compiled) | compiled time attributed |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for label, target, extra in CASES:
            if only and label not in only:
                continue
            print(row(label, run_case(target, extra, args.threads, args.vs_eager_s, Path(d))), flush=True)


if __name__ == "__main__":
    main()
