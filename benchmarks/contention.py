"""Does a run know when a busy neighbour disturbed it? The measurement behind harness.pipeline.contention.

``--study`` times benchmarks/scenarios/linear512_40.py (Linear(512, 512) applied 40 times,
batch 64) in this process at 1 and 2 threads, N spans quiet and N spans next to a CPU hog
(one ``while True: pass`` process per CPU, started with subprocess and killed by pid), every
span inside a ContentionProbe, quiet and hogged spans alternating. It prints, per class, the
probe's figures (run-queue delay share, CPU share, involuntary switches per iteration and per
thread-second, steal, others' CPU share), the latency slowdown against the quietest spans, how
the slowdown grows with the run-queue delay, and the margin between the classes at the
thresholds of harness.pipeline.contention.

``--verdicts`` runs separate ``python -m harness run`` processes (the hog running during a
random half of them) and ``python -m harness compare`` on pairs: identical code (goal: no
"regression" verdict) and linear512_40 against linear512_80 (+100 % work; goal: caught every
time). It reads each run's ``contention`` object from summary.json when the pipeline writes one.

    python benchmarks/contention.py --study --spans 8 --iters 20
    python benchmarks/contention.py --verdicts --pairs 30 --detect-pairs 10 --iters 20
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

SCEN = HERE / "scenarios"
HOG = "import sys; print('spinning', flush=True)\nwhile True: pass"
DELAY_BINS = (0.0, 0.02, 0.05, 0.10, 0.20, 0.40, 1.01)


@contextmanager
def hog(n: int):
    """n busy processes (one per CPU by default), each spinning before the block starts; killed by pid."""
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True))
        for p in procs:
            p.stdout.readline()
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- study
def probed_span(model, inputs, threads: int, warmup: int, iters: int) -> dict:
    """One timed loop (harness.pipeline.measure.time_forward) inside a ContentionProbe."""
    import torch

    from harness.pipeline.contention import ContentionProbe
    from harness.pipeline.measure import time_forward

    torch.set_num_threads(threads)
    with torch.inference_mode():
        time_forward(model, inputs, warmup=warmup, iters=0)
        with ContentionProbe(threads=threads, iterations=iters) as probe:
            timing = time_forward(model, inputs, warmup=0, iters=iters)
    r = probe.result()
    r["p50_s"] = statistics.median(timing.samples_s)
    r["switches_per_thread_s"] = r["involuntary_switches"] / (r["wall_s"] * threads)
    return r


def study(args) -> list[dict]:
    from harness.pipeline import prepare, scenario

    prep = prepare.prepare_scenario(scenario.load(str(SCEN / "linear512_40.py")), threads=1)
    hogs = args.hogs or os.cpu_count()
    rows = []
    print(f"study: linear512_40, {args.spans} quiet + {args.spans} hogged spans of {args.iters} iterations per "
          f"thread count, hog = {hogs} busy processes; load {loadavg()}", flush=True)
    for threads in args.threads:
        for i in range(args.spans):
            for cond in ("quiet", "hogged"):
                if cond == "hogged":
                    with hog(hogs):
                        r = probed_span(prep.model, prep.inputs, threads, args.warmup, args.iters)
                else:
                    r = probed_span(prep.model, prep.inputs, threads, args.warmup, args.iters)
                rows.append({"threads": threads, "condition": cond, "span": i, **r})
                print(f"  threads {threads} {cond:6s} #{i}: p50 {r['p50_s'] * 1e3:7.2f} ms  delay "
                      f"{r['run_delay_share']:.3f}  cpu {r['cpu_share']:.3f}  others {r['others_cpu_share']:.3f}  "
                      f"{'DISTURBED' if r['disturbed'] else 'quiet'}", flush=True)
    return rows


def _span(vals: list[float]) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    return f"{min(vals):.3f} / {statistics.median(vals):.3f} / {max(vals):.3f}"


def study_report(rows: list[dict]) -> dict:
    from harness.pipeline import contention as ct

    out = {"thresholds": ct.THRESHOLDS, "classes": {}, "margins": {}, "delay_bins": {}}
    print("\nfigures per class: min / median / max")
    head = ("threads", "class", "n", "disturbed", "run_delay_share", "cpu_share", "switches/iter",
            "switches/thread-s", "steal_share", "others_cpu_share", "slowdown p50")
    print(" | ".join(head))
    for threads in sorted({r["threads"] for r in rows}):
        mine = [r for r in rows if r["threads"] == threads]
        base = baseline_p50(mine)
        for r in mine:
            r["slowdown"] = r["p50_s"] / base
        for cond in ("quiet", "hogged"):
            cl = [r for r in mine if r["condition"] == cond]
            col = lambda k: [r[k] for r in cl]  # noqa: E731
            print(" | ".join([str(threads), cond, str(len(cl)), str(sum(r["disturbed"] for r in cl)),
                              _span(col("run_delay_share")), _span(col("cpu_share")),
                              _span(col("involuntary_switches_per_iter")), _span(col("switches_per_thread_s")),
                              _span(col("steal_share")), _span(col("others_cpu_share")), _span(col("slowdown"))]))
            out["classes"][f"{threads}t/{cond}"] = {"n": len(cl), "disturbed": sum(r["disturbed"] for r in cl)}
        out["margins"][threads] = margin(mine)
    print("\nslowdown of p50 against the quietest spans, by run-queue delay share (all spans)")
    for lo, hi in zip(DELAY_BINS, DELAY_BINS[1:]):
        b = [r for r in rows if lo <= r["run_delay_share"] < hi]
        if b:
            s = sorted(r["slowdown"] for r in b)
            print(f"  delay [{lo:.2f}, {min(hi, 1):.2f}): n {len(b):3d}  slowdown median {statistics.median(s):.2f}x "
                  f" max {s[-1]:.2f}x")
            out["delay_bins"][f"{lo:.2f}-{min(hi, 1):.2f}"] = {"n": len(b), "median": statistics.median(s),
                                                                "max": s[-1]}
    return out


def baseline_p50(rows: list[dict]) -> float:
    """Median p50 of the spans with the least run-queue delay (the quietest third, at least one)."""
    calm = sorted(rows, key=lambda r: r["run_delay_share"])[:max(1, len(rows) // 3)]
    return statistics.median(r["p50_s"] for r in calm)


def had_room(r: dict) -> bool:
    """A quiet span whose neighbours left CPUs free for all its threads (the ground truth "quiet").

    others_cpu_share < (cpus - threads) / cpus + 0.10: a neighbour on the other CPU of a
    1-thread run on 2 CPUs leaves it room; any neighbour of a 2-thread run does not.
    """
    cpus = os.cpu_count() or 1
    return r["condition"] == "quiet" and r["others_cpu_share"] < (cpus - r["threads"]) / cpus + 0.10


def margin(rows: list[dict]) -> dict:
    """How far each class sits from the run-queue delay threshold: hogged spans should all lie at
    or above it, quiet spans that had room (:func:`had_room`) below it."""
    from harness.pipeline import contention as ct

    t = ct.RUN_DELAY_SHARE_MAX
    hogged = [r["run_delay_share"] for r in rows if r["condition"] == "hogged"]
    alone = [r["run_delay_share"] for r in rows if had_room(r)]
    crowded = sum(r["condition"] == "quiet" for r in rows) - len(alone)
    res = {"lowest_hogged": min(hogged) if hogged else None, "highest_quiet_with_room": max(alone) if alone else None,
           "quiet_with_room_n": len(alone), "quiet_crowded_n": crowded}
    lo = f"{res['lowest_hogged']:.3f} ({res['lowest_hogged'] / t:.1f}x the threshold)" if hogged else "n/a"
    hi = f"{res['highest_quiet_with_room']:.3f} ({res['highest_quiet_with_room'] / t:.2f}x)" if alone else "n/a"
    print(f"threads {rows[0]['threads']}: threshold run_delay_share {t}: lowest hogged {lo}; highest of "
          f"{len(alone)} quiet spans whose neighbours left room {hi}; {crowded} quiet spans were crowded by "
          f"neighbours")
    return res


# --------------------------------------------------------------------------- verdicts
def harness_run(scen: str, logdir: Path, args, hogged: bool) -> dict:
    cmd = [sys.executable, "-m", "harness", "run", str(SCEN / scen), "--logdir", str(logdir), "--threads",
           str(args.run_threads), "--iters", str(args.iters), "--warmup", str(args.warmup), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if hogged:
        with hog(args.hogs or os.cpu_count()):
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    else:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"harness run failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    s = json.loads(res.stdout)
    return {"path": s["path"], "p50_s": s["latency_s"]["p50"], "hogged": hogged, "contention": s.get("contention")}


def harness_compare(a: dict, b: dict, logdir: Path, force: bool) -> dict:
    cmd = [sys.executable, "-m", "harness", "compare", a["path"], b["path"], "--logdir", str(logdir), "--json"]
    res = subprocess.run(cmd + (["--force"] if force else []), capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    if res.returncode not in (0, 1):
        raise SystemExit(f"harness compare failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    out = json.loads(res.stdout)
    lat = next(m for m in out["metrics"] if m["name"] == "latency")
    return {"regression": bool(out["regression"]), "verdict": lat["verdict"], "ratio": b["p50_s"] / a["p50_s"],
            "exit_code": res.returncode}


def _disturbed(run: dict) -> str:
    c = run["contention"]
    return "n/a" if c is None else ("DISTURBED" if c["disturbed"] else "quiet")


def verdict_pairs(kind: str, n: int, scen_b: str, hog_plan: list[bool], args) -> list[dict]:
    out = []
    for i in range(n):
        with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
            a = harness_run("linear512_40.py", Path(tmp), args, hog_plan[2 * i])
            b = harness_run(scen_b, Path(tmp), args, hog_plan[2 * i + 1])
            c = harness_compare(a, b, Path(tmp), force=scen_b != "linear512_40.py")
        row = {"kind": kind, "pair": i, "hogged": [a["hogged"], b["hogged"]], "p50_s": [a["p50_s"], b["p50_s"]],
               "contention": [a["contention"], b["contention"]], **c}
        out.append(row)
        print(f"  {kind} #{i:2d}: hog {'A' if a['hogged'] else '-'}{'B' if b['hogged'] else '-'}  "
              f"{_disturbed(a):9s} {_disturbed(b):9s} ratio {c['ratio']:6.2f}  verdict {c['verdict']:12s} "
              f"{'REGRESSION' if c['regression'] else ''}", flush=True)
    return out


def verdicts(args) -> dict:
    rng = random.Random(args.seed)
    plan_same = [False] * (2 * args.pairs)
    for k in rng.sample(range(2 * args.pairs), args.pairs):  # the hog during a random half of the runs
        plan_same[k] = True
    print(f"verdicts: {args.pairs} identical pairs (hog in a random half of the runs), {args.detect_pairs} quiet "
          f"+100% pairs; {args.iters} iterations, {args.run_threads} threads; load {loadavg()}", flush=True)
    same = verdict_pairs("identical", args.pairs, "linear512_40.py", plan_same, args)
    double = verdict_pairs("+100%", args.detect_pairs, "linear512_80.py", [False] * (2 * args.detect_pairs), args)
    return {"identical": same, "+100%": double, "summary": verdicts_report(same, double)}


def verdicts_report(same: list[dict], double: list[dict]) -> dict:
    def tally(rows):
        return {"pairs": len(rows), "regression": sum(r["regression"] for r in rows),
                "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in sorted({r["verdict"] for r in rows})},
                "pairs_with_a_disturbed_run": sum(any(c and c["disturbed"] for c in r["contention"]) for r in rows),
                "pairs_without_contention_figures": sum(any(c is None for c in r["contention"]) for r in rows)}

    s, d = tally(same), tally(double)
    print(f"\nidentical code: {s['regression']}/{s['pairs']} called a regression (goal 0); verdicts {s['verdicts']}; "
          f"{s['pairs_with_a_disturbed_run']} pairs had a run its probe marked disturbed")
    print(f"+100% work:     {d['regression']}/{d['pairs']} caught as a regression (goal all); verdicts {d['verdicts']}")
    if s["pairs_without_contention_figures"] or d["pairs_without_contention_figures"]:
        print("note: some runs have no `contention` in summary.json: the pipeline does not probe yet")
    print(f"load {loadavg()}")
    return {"identical": s, "+100%": d}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", action="store_true", help="quiet vs hogged spans in this process")
    ap.add_argument("--verdicts", action="store_true", help="separate harness run processes + harness compare")
    ap.add_argument("--spans", type=int, default=8, help="study: spans per class and thread count (default 8)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="study: thread counts (default 1 2)")
    ap.add_argument("--iters", type=int, default=20, help="timed iterations per span or run (default 20)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up iterations (default 5)")
    ap.add_argument("--hogs", type=int, default=None, help="busy processes while hogged (default: one per CPU)")
    ap.add_argument("--pairs", type=int, default=30, help="verdicts: identical pairs (default 30)")
    ap.add_argument("--detect-pairs", type=int, default=10, help="verdicts: +100%% pairs (default 10)")
    ap.add_argument("--run-threads", type=int, default=2, help="verdicts: --threads of each run (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="verdicts: which runs get the hog")
    ap.add_argument("--json", default=None, help="write everything measured to this file")
    args = ap.parse_args()
    if not (args.study or args.verdicts):
        ap.error("give --study, --verdicts or both")
    result: dict = {"load_start": loadavg()}
    t0 = time.perf_counter()
    if args.study:
        rows = study(args)
        result["study"] = {"spans": rows, "summary": study_report(rows)}
    if args.verdicts:
        result["verdicts"] = verdicts(args)
    result["wall_s"] = time.perf_counter() - t0
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
