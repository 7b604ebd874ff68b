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
                    "threads=1,channels_last,prompt_len=64. Both sides run the same workload (--workload, else "
                    "the scenarios'): a forward, a training step (judged by the step time) or a generation "
                    "(judged by the decode step); every phase's ratio is reported beside the verdict. "
                    "Exit codes: 0 no regression (incl. inconclusive), 1 regression, 2 bad input.")
    p.add_argument("baseline", help="scenario name or file, optionally :key=value,... (batch_size/bs, dtype, "
                                    "device, threads, channels_last, label, workload, and each workload option "
                                    "by name: prompt_len, new_tokens, optimizer)")
    p.add_argument("candidate", help="same form as BASELINE")
    p.add_argument("--threshold", default="5%", help="the change worth catching (default 5%%): 'slower' needs "
                                                     "the interval above 1 and an estimate of at least half of it")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds of alternating timing (default 20; 40 with --isolate); more time, narrower interval")
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
    from .options import add_scenario_options

    add_scenario_options(p, shared=True)
    p.set_defaults(func=main)


def _sides(args: argparse.Namespace):
    """The two sides: the shared flags made into one run spec (:func:`~.options.spec_from_args`), each side's
    own ``:key=value`` options on top."""
    from ..tracking.ab import defaults_of, parse_side
    from .options import spec_from_args

    shared = defaults_of(spec_from_args(args, target=args.baseline, logdir=None))
    return (parse_side(args.baseline, **shared, python=args.baseline_python),
            parse_side(args.candidate, **shared, python=args.candidate_python))


def main(args: argparse.Namespace) -> int:
    """Check the flags, parse both sides, run the A/B, print the result (or ab.json); the exit code."""
    from ..tracking.ab import run_ab
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
    a, b = _sides(args)  # run_ab loads both scenarios and checks their workloads before building anything
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
    """``[label] scenario · bs · dtype · device · threads [· channels_last] [· workload (its options)]``."""
    bits = [d.get("scenario"), f"bs {d.get('batch_size')}", d.get("dtype"), d.get("device"), f"{d.get('threads')} thread" + ("s" if d.get("threads") != 1 else "")]
    if d.get("channels_last"):
        bits.append("channels_last")
    if d.get("workload") not in (None, "forward"):
        config = ", ".join(f"{k} {v}" for k, v in (d.get("workload_config") or {}).items())
        bits.append(d["workload"] + (f" ({config})" if config else ""))
    label = (d.get("spec") or {}).get("label")
    if label:
        bits.insert(0, f"[{label}]")
    return " · ".join(str(x) for x in bits)


def _work_lines(r) -> list[str]:
    """The ``!! WORK DIFFERS`` lines when the sides' counted work differs (none otherwise)."""
    if not r.work_differs:
        return []
    diffs = "; ".join(f"{k} {si(v['baseline'])} -> {si(v['candidate'])} ({(v['candidate'] / v['baseline'] - 1) * 100:+.1f}%)"
                      for k, v in r.work_differs.items() if v["baseline"])
    return [f"!! WORK DIFFERS: {diffs}", "!! a change of work explains a change of time; the latency verdict below still stands"]


def _side_lines(r) -> list[str]:
    """One line per side: what it ran, the median of what is judged, its work and CPU share."""
    out = []
    w = max(len(_side_line(r.baseline)), len(_side_line(r.candidate)))
    what = "" if r.judged in ("forward", "iteration") else f"{r.judged} "
    for name, d in (("baseline", r.baseline), ("candidate", r.candidate)):
        extra = f"   (python {d.get('python')}, torch {d.get('torch_version')})" if r.isolate else ""
        c = d.get("counts") or {}
        work = f"   {si(c['flops'], 'FLOP')}" if c.get("flops") else ""
        share = f"   cpu {percent(d['cpu_share'], 0)}" if d.get("cpu_share") is not None else ""
        med = (d.get("phase_median_s") or {}).get(r.verdict_phase) if r.verdict_phase else d.get("median_s")
        out.append(f"{name:<10} {_side_line(d):<{w}}   {what}median {seconds(med)}{work}{share}{extra}")
    return out


def _phase_lines(r) -> list[str]:
    """A workload of several phases: each phase's ratio and the whole iteration's, beside the verdict."""
    if len(r.phases) < 2:
        return []
    rows = [(name, e) for name, e in r.phases.items()] + [(None, r.iteration)]
    width = max(len(e["word"]) for _, e in rows if e)
    out = []
    for name, e in rows:
        if not e:
            continue
        note = {r.verdict_phase: "   (judged)", None: "   (whole iteration)"}.get(name, "")
        if name is None and r.verdict_phase is None:
            note = "   (whole iteration, judged)"
        out.append(f"{'phase':<10} {e['word']:<{width}}  {e['ratio']:.3f}   [{e['low']:.3f}, {e['high']:.3f}]   "
                   f"median {seconds(e['baseline_median_s'])} -> {seconds(e['candidate_median_s'])}{note}")
    return out


def _verdict_text(r) -> str:
    """The verdict in words, with the change and, when inconclusive, why."""
    e, t = r.estimate, r.threshold * 100
    change = (e.ratio - 1) * 100
    if r.verdict == "slower":
        return f"slower by {change:.1f}%"
    if r.verdict == "faster":
        return f"faster by {-change:.1f}% ({1 / e.ratio:.3f}x the speed)"
    if r.verdict == "no significant change":
        return f"no significant change (any change is within ±{t:g}%)"
    if r.inconclusive_reason:
        return f"inconclusive ({r.inconclusive_reason}); rerun on a quieter machine, or with --threads 1"
    return "inconclusive: the interval is too wide to decide"


def render(r) -> str:
    """The terminal summary of an A/B (:class:`~harness.tracking.ab.AbResult`)."""
    e, t = r.estimate, r.threshold * 100
    out = _work_lines(r) + _side_lines(r)
    unit = f"{r.generations} worker generations, {r.pairs} block pairs" if r.isolate else f"{r.pairs} block pairs"
    word = (r.baseline.get("words") or {}).get("iteration", "iteration")
    judged = "" if r.judged in ("forward", "iteration") else f"{r.judged}; "
    out.append(f"{'ratio':<10} candidate/baseline {e.ratio:.3f}   {e.level * 100:.0f}% interval [{e.low:.3f}, {e.high:.3f}]"
               f"   ({judged}{METHOD_NAMES[r.method]}; {unit} of {r.block_iterations} {word}(s), "
               f"{r.elapsed_s:.1f} s)")
    out += _phase_lines(r)
    cont = r.contention or {}
    if cont.get("pairs_measured"):
        out.append(f"{'contention':<10} {cont['disturbed_pairs']} of {cont['pairs_measured']} block pairs disturbed "
                   f"(a side below {cont['block_disturbed_below_cpu_share'] * 100:.0f}% CPU share; a verdict needs "
                   f"at most {cont['max_disturbed_pair_share'] * 100:.0f}%)")
    out.append(f"{'verdict':<10} {_verdict_text(r)}")
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
