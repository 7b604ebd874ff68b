"""How often does `harness ab` call a real slowdown (5 % or 2 %), and how often identical code?

Each trial is one complete `harness ab` session (fresh models, warm-up, alternating blocks
for --budget-s seconds, verdict) in this process, through harness.tracking.ab.run_ab:

* "identical": the base scenario against itself (two separate model instances);
* "+5 %" (``--effect 0.05``): chain_20.py against chain_21.py (21 instead of 20 applications
  of one layer: 5 % more work);
* "+2 %" (``--effect 0.02``): chain_50.py against chain_51.py, or with ``--workload generate``
  decode_chain_50.py against decode_chain_51.py (a decode step of 51 applications).

``--workload forward|train|generate`` picks what ab times and judges: a forward, a training
step (forward, backward, optimizer), or a generation's decode step (its verdict phase).

Trials of the two kinds alternate, so a change in the machine's load affects both alike.
Every trial's pairs are also judged with the other interval methods (same data), so the
methods can be compared. Prints the two rates with 95 % Clopper-Pearson intervals, the
number of trials and the wall time per verdict (setup included).

    python benchmarks/regression_power.py --trials 100 --budget-s 5 --json power.json
    python benchmarks/regression_power.py --isolate --trials 20          # the --isolate mode
    python benchmarks/regression_power.py --effect 0.02 --threshold 0.01 --workload train --budget-s 15
    python benchmarks/regression_power.py --between-runs 30              # separate processes

``--between-runs N`` instead times chain_20 in N back-to-back processes (100 iterations
each, like separate `harness run`s) and prints their spread: the measurement behind
harness.compare.DEFAULT_BETWEEN_RUN_SD.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

SCEN = HERE / "scenarios"


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for k successes in n trials (by bisection on the binomial CDF)."""
    if n == 0:
        return 0.0, 1.0

    def cdf(x, p):  # P(X <= x)
        if p <= 0:
            return 1.0
        if p >= 1:
            return 0.0 if x < n else 1.0
        return sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                            + i * math.log(p) + (n - i) * math.log1p(-p)) for i in range(0, x + 1))

    a = (1 - level) / 2

    def solve(f):
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if f(mid):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = 0.0 if k == 0 else solve(lambda p: cdf(k - 1, p) > 1 - a)
    high = 1.0 if k == n else solve(lambda p: cdf(k, p) > a)
    return low, high


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


PAIRS = {  # (effect, workload) -> (base file, slower file)
    (0.05, "forward"): ("chain_20", "chain_21"), (0.05, "train"): ("chain_20", "chain_21"),
    (0.02, "forward"): ("chain_50", "chain_51"), (0.02, "train"): ("chain_50", "chain_51"),
    (0.02, "generate"): ("decode_chain_50", "decode_chain_51"),
}


def effect_kind(args) -> str:
    return f"+{args.effect:.0%}"


def sides(args) -> dict:
    """``{"identical": (base, same), "+N%": (base, slower)}`` as ab SideSpecs of ``args.workload``."""
    from harness.tracking import ab

    try:
        base, slower = PAIRS[(args.effect, args.workload)]
    except KeyError:
        raise SystemExit(f"no benchmark pair for --effect {args.effect} --workload {args.workload}: "
                         f"have {sorted(PAIRS)}") from None

    def side(name: str):
        return ab.SideSpec.of(str(SCEN / f"{name}.py"), threads=args.threads, workload=args.workload)

    return {"identical": (side(base), side(base)), effect_kind(args): (side(base), side(slower))}


def power(args) -> dict:
    from harness.tracking import ab, stats

    kinds = sides(args)
    out: dict = {k: [] for k in kinds}
    print(f"{args.workload}: {args.trials} trials per kind, budget {args.budget_s} s each, "
          f"threshold {args.threshold:.0%}, effect {effect_kind(args)}, "
          f"{'isolated workers' if args.isolate else 'in one process'}, threads {args.threads or 'default'}; "
          f"load average at start {loadavg()}", flush=True)
    t_all = time.perf_counter()
    for t in range(args.trials):
        for kind, (base, cand) in kinds.items():
            t0 = time.perf_counter()
            r = ab.run_ab(base, cand, budget_s=args.budget_s, threshold=args.threshold, logdir=None, count=False,
                          isolate=args.isolate, generation_s=args.generation_s, min_pairs=8)
            wall = time.perf_counter() - t0
            logs = [math.log(c / b) for (_, _, _, b, c) in r.pair_rows if b > 0 and c > 0]
            verdicts = {}
            for m in stats.METHODS:
                if args.isolate:
                    verdicts[m] = r.verdict if m == "hl" else None
                    continue
                e = stats.estimate_from_logs(logs, method=m, seed=t)
                verdicts[m] = stats.verdict(e, args.threshold)
            rec = {"trial": t, "kind": kind, "ratio": r.estimate.ratio, "low": r.estimate.low, "high": r.estimate.high,
                   "pairs": r.pairs, "k": r.block_iterations, "wall_s": wall, "verdicts": verdicts, "load": loadavg(),
                   "disturbed_pairs": r.contention.get("disturbed_pairs")}
            out[kind].append(rec)
            if args.json:  # every trial as it finishes, so a stopped benchmark keeps its data
                with open(args.json + ".trials.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
        if (t + 1) % max(1, args.trials // 10) == 0 or t + 1 == args.trials:
            done = {k: sum(v["verdicts"]["hl"] == "slower" for v in out[k]) for k in kinds}
            print(f"  {t + 1:4d}/{args.trials}: called slower: identical {done['identical']}, "
                  f"{effect_kind(args)} {done[effect_kind(args)]}"
                  f"   ({time.perf_counter() - t_all:.0f} s, load {loadavg()})", flush=True)
    return out


def report(out: dict, args) -> dict:
    import numpy as np

    from harness.tracking import stats

    summary = {"workload": args.workload, "effect": args.effect,
               "trials_per_kind": args.trials, "budget_s": args.budget_s, "threshold": args.threshold,
               "isolate": args.isolate, "threads": args.threads, "load_average_end": loadavg(), "methods": {}}
    print()
    methods = ["hl"] if args.isolate else list(stats.METHODS)
    for m in methods:
        row = {}
        for kind in out:
            n = len(out[kind])
            k = sum(v["verdicts"][m] == "slower" for v in out[kind])
            lo, hi = clopper_pearson(k, n)
            row[kind] = {"slower": k, "n": n, "rate": k / n if n else math.nan, "ci95": [lo, hi]}
        summary["methods"][m] = row
        name = {"hl": "Hodges-Lehmann (default)", "bootstrap": "bootstrap median", "sign": "sign-test median"}[m]
        d, f = row[effect_kind(args)], row["identical"]
        print(f"{name:<26} {effect_kind(args)} called slower {d['slower']}/{d['n']} = {d['rate']:.1%} "
              f"[{d['ci95'][0]:.1%}, {d['ci95'][1]:.1%}]   identical called slower {f['slower']}/{f['n']} = "
              f"{f['rate']:.1%} [{f['ci95'][0]:.1%}, {f['ci95'][1]:.1%}]")
    walls = [v["wall_s"] for kind in out for v in out[kind]]
    ratios = {kind: [v["ratio"] for v in out[kind]] for kind in out}
    summary["wall_s_per_verdict"] = {"median": float(np.median(walls)), "mean": float(np.mean(walls))}
    summary["median_ratio"] = {k: float(np.median(v)) for k, v in ratios.items()}
    summary["pairs_median"] = float(np.median([v["pairs"] for kind in out for v in out[kind]]))
    summary["other_verdicts"] = {kind: {vv: sum(v["verdicts"]["hl"] == vv for v in out[kind])
                                        for vv in (stats.SLOWER, stats.FASTER, stats.NO_CHANGE, stats.INCONCLUSIVE)}
                                 for kind in out}
    print(f"time per verdict: median {summary['wall_s_per_verdict']['median']:.2f} s, mean "
          f"{summary['wall_s_per_verdict']['mean']:.2f} s (setup + warm-up + {args.budget_s} s of blocks); "
          f"median {summary['pairs_median']:.0f} pairs per verdict")
    print(f"median estimated ratio: identical {summary['median_ratio']['identical']:.4f}, {effect_kind(args)} "
          f"{summary['median_ratio'][effect_kind(args)]:.4f}")
    print(f"all verdicts (default method): {json.dumps(summary['other_verdicts'])}")
    print(f"load average at end {loadavg()}")
    return summary


WORKER = """
import sys, json, statistics, torch
sys.path.insert(0, {root!r})
from harness.pipeline import scenario, prepare, measure
p = prepare.prepare_scenario(scenario.load({scen!r}), threads={threads})
with torch.inference_mode():
    t = measure.time_forward(p.model, p.inputs, warmup=5, iters=100)
print(json.dumps({{"p50": statistics.median(t.samples_s)}}))
"""


def between_runs(args) -> dict:
    import numpy as np

    code = WORKER.format(root=str(ROOT), scen=str(SCEN / "chain_20.py"), threads=args.threads)
    p50 = []
    print(f"{args.between_runs} back-to-back processes timing chain_20 (100 iterations each); load {loadavg()}",
          flush=True)
    for i in range(args.between_runs):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        p50.append(json.loads(res.stdout)["p50"])
    a = np.array(p50)
    logs = np.log(a)
    d = np.diff(logs)
    rms = float(np.sqrt(np.mean(d ** 2) / 2))
    out = {
        "runs": len(a), "p50_s": p50,
        "spread_over_median": float((a.max() - a.min()) / np.median(a)),
        "consecutive_ratio_min": float(np.exp(d.min())), "consecutive_ratio_max": float(np.exp(d.max())),
        "sd_log_one_run_from_consecutive": rms,
        "sd_log_one_run_mad": float(1.4826 * np.median(np.abs(logs - np.median(logs)))),
    }
    print(f"medians spread over {out['spread_over_median']:.0%} of their middle value; consecutive processes "
          f"{out['consecutive_ratio_min']:.2f}x to {out['consecutive_ratio_max']:.2f}x")
    print(f"one run's between-run SD (log): {rms:.3f} from consecutive differences (RMS / sqrt 2), "
          f"{out['sd_log_one_run_mad']:.3f} robust (MAD); load {loadavg()}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100, help="trials per kind (default 100)")
    ap.add_argument("--budget-s", type=float, default=5.0, help="seconds of alternating blocks per verdict (default 5)")
    ap.add_argument("--threshold", type=float, default=0.05, help="verdict threshold (default 0.05)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (default 1: on a shared 2-vCPU host a neighbour on one core "
                         "makes 2-thread iterations 10-100x slower while it lasts; 0 = torch's default)")
    ap.add_argument("--effect", type=float, default=0.05, choices=(0.05, 0.02),
                    help="the real slowdown of the 'slower' side (default 0.05: chain_20/21; 0.02: chain_50/51)")
    ap.add_argument("--workload", default="forward", choices=("forward", "train", "generate"),
                    help="what ab times and judges (default forward; generate judges the decode step)")
    ap.add_argument("--isolate", action="store_true", help="benchmark the --isolate mode")
    ap.add_argument("--generation-s", type=float, default=0.5, help="--isolate generation length (default 0.5)")
    ap.add_argument("--between-runs", type=int, default=0, metavar="N",
                    help="instead: time N separate processes and print the between-run noise")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    args.threads = args.threads or None
    if args.between_runs:
        result = between_runs(args)
    else:
        result = report(power(args), args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
