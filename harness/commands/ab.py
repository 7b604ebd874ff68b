"""``python -m harness ab BASELINE CANDIDATE``: interleaved A/B timing, the verdict to trust."""
from __future__ import annotations

import argparse
import sys

from ..errors import HarnessError
from ..core.units import percent, seconds, si

METHOD_NAMES = {"hl": "Hodges-Lehmann / signed-rank", "bootstrap": "bootstrap of the median", "sign": "sign-test median"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ab", help="time two scenarios in alternating blocks in one session: slower, faster or no change",
        description="Build BASELINE and CANDIDATE in one process and time them in alternating blocks (ABBA...), "
                    "so the machine's drift cancels; the verdict comes from the paired block ratios. Each side is "
                    "a scenario name or file, optionally with its own options: SCENARIO:bs=8,dtype=bfloat16,"
                    "threads=1,channels_last. Exit codes: 0 no regression (incl. inconclusive), 1 regression, "
                    "2 bad input.")
    p.add_argument("baseline", help="scenario name or file, optionally :key=value,... (batch_size/bs, dtype, "
                                    "device, threads, channels_last, label)")
    p.add_argument("candidate", help="same form as BASELINE")
    p.add_argument("--threshold", default="5%", help="the change worth catching (default 5%%): 'slower' needs "
                                                     "the interval above 1 and an estimate of at least half of it")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds of alternating timing (default 20; 40 with --isolate); more time, narrower interval")
    p.add_argument("--batch-size", type=int, default=None, help="batch size for both sides (a side's :bs= wins)")
    p.add_argument("--dtype", default=None, help="dtype for both sides")
    p.add_argument("--device", default=None, help="device for both sides")
    p.add_argument("--threads", type=int, default=None, help="torch threads for both sides")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for both sides")
    p.add_argument("--isolate", action="store_true",
                   help="run each side in its own worker process (its own Python with --baseline-python/"
                        "--candidate-python), alternating blocks between them; workers are replaced every few seconds")
    p.add_argument("--baseline-python", default=None, metavar="PATH", help="Python for the baseline side (--isolate)")
    p.add_argument("--candidate-python", default=None, metavar="PATH", help="Python for the candidate side (--isolate)")
    p.add_argument("--method", default="hl", choices=["hl", "bootstrap", "sign"],
                   help="interval: hl (Hodges-Lehmann with the signed-rank interval; default), bootstrap "
                        "(percentile bootstrap of the median), sign (order statistics of the median)")
    p.add_argument("--level", type=float, default=0.98, help="interval level (default 0.98)")
    p.add_argument("--min-pairs", type=int, default=8, help="at least this many block pairs, even past the budget "
                                                            "(default 8)")
    p.add_argument("--block-s", type=float, default=0.015, help="seconds of work per block (default 0.015)")
    p.add_argument("--generation-s", type=float, default=2.0,
                   help="with --isolate: seconds of blocks per pair of worker processes before both are replaced "
                        "(default 2); at least 7 generations are run")
    p.add_argument("--fail-on", default="latency", metavar="METRICS",
                   help="comma-separated metrics whose regression exits 1: latency, throughput (default latency)")
    p.add_argument("--no-count", action="store_true", help="skip counting FLOPs/params of the two sides")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (--method bootstrap)")
    p.add_argument("--logdir", default="logs", help="the run directory goes to LOGDIR/ab/<run_id>/ (default: logs)")
    p.add_argument("--json", action="store_true", help="print ab.json on stdout (progress stays on stderr)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..tracking.ab import parse_side, run_ab
    from ..tracking.compare import parse_threshold
    from ..core.fsio import to_json

    threshold = parse_threshold(args.threshold)
    fail_on = tuple(t.strip() for t in args.fail_on.split(",") if t.strip())
    bad = [t for t in fail_on if t not in ("latency", "throughput")]
    if bad or not fail_on:
        raise HarnessError(f"--fail-on {args.fail_on!r}: choose from latency, throughput (memory: use `compare`)")
    if not 0.5 < args.level < 1:
        raise HarnessError(f"--level must be between 0.5 and 1, got {args.level}")
    if args.generation_s <= 0:
        raise HarnessError(f"--generation-s must be positive, got {args.generation_s}")
    if args.block_s <= 0:
        raise HarnessError(f"--block-s must be positive, got {args.block_s}")
    if (args.baseline_python or args.candidate_python) and not args.isolate:
        raise HarnessError("--baseline-python/--candidate-python need --isolate")
    shared = dict(batch_size=args.batch_size, dtype=args.dtype, device=args.device, threads=args.threads,
                  channels_last=True if args.channels_last else None)
    if args.batch_size is not None and args.batch_size < 1:
        raise HarnessError(f"--batch-size must be at least 1, got {args.batch_size}")
    a = parse_side(args.baseline, **shared, python=args.baseline_python)
    b = parse_side(args.candidate, **shared, python=args.candidate_python)
    for side in (a, b):  # fail fast, before any model is built
        from ..pipeline import scenario

        scenario.load(side.scenario)
    tty = sys.stderr.isatty()

    def progress(text: str) -> None:
        if tty:
            print(f"\r\033[Kab: {text}", end="", file=sys.stderr, flush=True)

    try:
        r = run_ab(a, b, budget_s=args.budget_s, threshold=threshold, method=args.method, level=args.level,
                   min_pairs=args.min_pairs, block_s=args.block_s, isolate=args.isolate,
                   generation_s=args.generation_s, logdir=args.logdir,
                   fail_on=fail_on, seed=args.seed, progress=progress, count=not args.no_count)
    finally:
        if tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.json:
        sys.stdout.write(to_json(r.as_dict()))
    else:
        print(render(r))
    return r.exit_code


def _side_line(d: dict) -> str:
    bits = [d.get("scenario"), f"bs {d.get('batch_size')}", d.get("dtype"), d.get("device"), f"{d.get('threads')} thread" + ("s" if d.get("threads") != 1 else "")]
    if d.get("channels_last"):
        bits.append("channels_last")
    label = (d.get("spec") or {}).get("label")
    if label:
        bits.insert(0, f"[{label}]")
    return " · ".join(str(x) for x in bits)


def render(r) -> str:
    e = r.estimate
    out = []
    if r.work_differs:
        diffs = "; ".join(f"{k} {si(v['baseline'])} -> {si(v['candidate'])} ({(v['candidate'] / v['baseline'] - 1) * 100:+.1f}%)"
                          for k, v in r.work_differs.items() if v["baseline"])
        out.append(f"!! WORK DIFFERS: {diffs}")
        out.append("!! a change of work explains a change of time; the latency verdict below still stands")
    w = max(len(_side_line(r.baseline)), len(_side_line(r.candidate)))
    for name, d in (("baseline", r.baseline), ("candidate", r.candidate)):
        extra = ""
        if r.isolate:
            extra = f"   (python {d.get('python')}, torch {d.get('torch_version')})"
        c = d.get("counts") or {}
        work = f"   {si(c['flops'], 'FLOP')}" if c.get("flops") else ""
        share = f"   cpu {percent(d['cpu_share'], 0)}" if d.get("cpu_share") is not None else ""
        out.append(f"{name:<10} {_side_line(d):<{w}}   median {seconds(d.get('median_s'))}{work}{share}{extra}")
    unit = f"{r.generations} worker generations, {r.pairs} block pairs" if r.isolate else f"{r.pairs} block pairs"
    out.append(f"{'ratio':<10} candidate/baseline {e.ratio:.3f}   {e.level * 100:.0f}% interval [{e.low:.3f}, {e.high:.3f}]"
               f"   ({METHOD_NAMES[r.method]}; {unit} of {r.block_iterations} iteration(s), "
               f"{r.elapsed_s:.1f} s)")
    change = (e.ratio - 1) * 100
    t = r.threshold * 100
    if r.verdict == "slower":
        v = f"slower by {change:.1f}%"
    elif r.verdict == "faster":
        v = f"faster by {-change:.1f}% ({1 / e.ratio:.3f}x the speed)"
    elif r.verdict == "no significant change":
        v = f"no significant change (any change is within ±{t:g}%)"
    elif r.inconclusive_reason:
        v = f"inconclusive ({r.inconclusive_reason}); rerun on a quieter machine, or with --threads 1"
    else:
        v = "inconclusive: the interval is too wide to decide"
    cont = r.contention or {}
    if cont.get("pairs_measured"):
        out.append(f"{'contention':<10} {cont['disturbed_pairs']} of {cont['pairs_measured']} block pairs disturbed "
                   f"(a side below {cont['block_disturbed_below_cpu_share'] * 100:.0f}% CPU share; a verdict needs "
                   f"at most {cont['max_disturbed_pair_share'] * 100:.0f}%)")
    out.append(f"{'verdict':<10} {v}")
    if r.verdict == "inconclusive" and not r.inconclusive_reason and r.pairs_needed and r.pairs and not r.isolate:
        per_pair = r.elapsed_s / r.pairs
        out.append(f"{'':<10} about {r.pairs_needed} pairs would settle a {t:g}% change: try --budget-s "
                   f"{max(r.pairs_needed * per_pair * 1.2, r.budget_s * 1.5):.0f}")
    if r.throughput.get("verdict") != r.verdict:
        out.append(f"{'throughput':<10} candidate/baseline {r.throughput['ratio']:.3f} samples/s: {r.throughput['verdict']}")
    if r.regressed:
        out.append(f"REGRESSION in {', '.join(r.regressed)} (threshold {t:g}%): exit 1")
    if r.path:
        out.append(f"{'run':<10} {r.path}")
    return "\n".join(out)
