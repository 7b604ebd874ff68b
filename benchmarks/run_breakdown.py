"""Where the time of `python -m harness run vgg16` goes, and what the harness's timing costs.

Prints the wall time of each stage (import, load, build, warm-up, latency, count,
profile, join, write) of one real run into a temporary logdir, the end-to-end total
(goal: <= 30 s on 2 cores), and the harness's un-profiled p50 against a plain
`for` loop timing the same model in the same process (goal: within 3%). The two
timings alternate in blocks (ABAB...) so the machine's clock drift cancels.

    .venv/bin/python benchmarks/run_breakdown.py [--scenario vgg16] [--blocks 6] [--iters 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

T0 = time.perf_counter()
import torch  # noqa: E402

import harness.pipeline.run  # noqa: E402
from harness.pipeline import scenario as scenario_mod  # noqa: E402
from harness.pipeline.measure import time_workload  # noqa: E402
from harness.pipeline.prepare import prepare_scenario  # noqa: E402
from harness.pipeline.workloads import Forward  # noqa: E402

T_IMPORT = time.perf_counter() - T0


def plain_loop(model, x, iters: int) -> list[float]:
    """What a user writes by hand: perf_counter around each forward."""
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        model(x)
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="vgg16")
    ap.add_argument("--blocks", type=int, default=10, help="block pairs for the overhead comparison")
    ap.add_argument("--iters", type=int, default=10, help="iterations per block")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as logdir:
        t = time.perf_counter()
        run = harness.pipeline.run.run_scenario(args.scenario, logdir=logdir)
        t_run = time.perf_counter() - t
    st = run.summary["stage_times_s"]
    lat = run.summary["latency_s"]
    warm = st.get("latency", 0.0) - lat["mean"] * lat["n"]
    print(f"run {args.scenario}: stage wall times (s), {torch.get_num_threads()} threads")
    print(f"  {'import':<10}{T_IMPORT:8.2f}")
    for k in ["load", "build", "latency", "count", "profile", "join", "write"]:
        extra = f"   (warm-up ~{warm:.2f} s, timed {lat['n']} iters {lat['mean'] * lat['n']:.2f} s)" if k == "latency" else ""
        print(f"  {k:<10}{st.get(k, float('nan')):8.2f}{extra}")
    total = T_IMPORT + t_run
    print(f"  {'total':<10}{total:8.2f}   goal <= 30 s: {'met' if total <= 30 else 'NOT met'}")

    # overhead of the harness's timing loop against a plain loop, interleaved
    prep = prepare_scenario(scenario_mod.load(args.scenario))
    harness_p50, plain_p50 = [], []
    with torch.inference_mode():
        x = prep.inputs  # the built-in scenarios take one tensor
        plain_loop(prep.model, x, 3)
        for i in range(args.blocks):
            # ABBA order: a drift within a pair (clock, neighbours) favours neither side
            h = lambda: harness_p50.append(statistics.median(  # noqa: E731
                time_workload(Forward(), prep, warmup=0, iters=args.iters).samples_s))
            p = lambda: plain_p50.append(statistics.median(plain_loop(prep.model, x, args.iters)))  # noqa: E731
            for f in ((h, p) if i % 2 == 0 else (p, h)):
                f()
    ratios = [h / p for h, p in zip(harness_p50, plain_p50)]
    r = statistics.median(ratios)
    print(f"\nun-profiled p50, {args.blocks} interleaved (ABBA) block pairs of {args.iters} iters:")
    print(f"  harness time_forward  {statistics.median(harness_p50) * 1e3:8.2f} ms")
    print(f"  plain perf_counter    {statistics.median(plain_p50) * 1e3:8.2f} ms")
    print(f"  ratio harness/plain   {r:8.4f}  (block ratios {min(ratios):.3f}..{max(ratios):.3f}); "
          f"goal within 3%: {'met' if abs(r - 1) <= 0.03 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
