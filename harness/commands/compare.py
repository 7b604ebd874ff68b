"""``python -m harness compare BASELINE CANDIDATE`` (or ``--scenario NAME``): two finished runs."""
from __future__ import annotations

import argparse
import sys

from ..errors import HarnessError
from ..core.units import seconds, si


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare two finished runs, accounting for between-run noise",
        description="Compare two finished runs (run directories or run ids). Separate runs differ by "
                    "between-run noise that their own samples do not show; it is estimated from history.csv "
                    "(same config, same machine) or a measured default, and a change it can explain is "
                    "'inconclusive' (use `harness ab` for a verdict you can trust). A run whose machine was "
                    "disturbed (busy neighbours) gets no timed verdict: inconclusive, exit 0 (--strict: 2). "
                    "Exit codes: 0 no regression (including inconclusive), 1 regression, 2 bad input.")
    p.add_argument("baseline", nargs="?", help="run directory or run id")
    p.add_argument("candidate", nargs="?", help="run directory or run id")
    p.add_argument("--scenario", default=None, help="compare the latest run of SCENARIO with the one before it "
                                                    "(same config)")
    p.add_argument("--logdir", default="logs", help="where runs and history.csv are (default: logs)")
    p.add_argument("--threshold", default="5%", help="the change worth catching (default 5%%)")
    p.add_argument("--fail-on", default="latency", metavar="METRICS",
                   help="comma-separated metrics whose regression exits 1: latency, throughput, memory "
                        "(default: latency)")
    p.add_argument("--force", action="store_true",
                   help="compare runs of different scenarios or configs (and, with --scenario, of different networks)")
    p.add_argument("--strict", action="store_true",
                   help="exit 2 instead of 0 when either run was disturbed (no timed verdict was possible)")
    p.add_argument("--noise", default=None, metavar="PCT",
                   help="between-run noise of one run (log SD, e.g. 3%%) instead of estimating it")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON (for CI)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..tracking import compare as cmp
    from ..core.fsio import to_json

    threshold = cmp.parse_threshold(args.threshold)
    fail_on = cmp.parse_fail_on(args.fail_on)
    noise = None
    if args.noise is not None:
        noise = cmp.parse_threshold(args.noise)
    if args.scenario:
        if args.baseline or args.candidate:
            raise HarnessError("give either BASELINE CANDIDATE or --scenario, not both")
        base_ref, cand_ref = cmp.latest_pair(args.scenario, args.logdir)
    else:
        if not (args.baseline and args.candidate):
            raise HarnessError("give BASELINE and CANDIDATE (run directories or run ids), or --scenario NAME")
        base_ref, cand_ref = args.baseline, args.candidate
    base = cmp.resolve(base_ref, args.logdir)
    cand = cmp.resolve(cand_ref, args.logdir)
    result = cmp.compare_runs(base, cand, logdir=args.logdir, threshold=threshold, force=args.force,
                              noise_sd=noise, fail_on=fail_on, same_work=bool(args.scenario), strict=args.strict)
    if args.json:
        sys.stdout.write(to_json(result.as_dict()))
    else:
        print(render(result))
    return result.exit_code


def _fmt(name: str, v) -> str:
    if v is None:
        return "n/a"
    if name == "latency":
        return seconds(v)
    if name == "throughput":
        return si(v, "/s")
    if name == "flop_rate":
        return si(v, "FLOP/s")
    if name == "memory":
        return si(v, "B")
    return f"{v:.4g}"


def _machine(s: dict) -> str:
    """``cpu 97%``, ``cpu 41% DISTURBED``, or ``cpu n/a`` (a run that did not measure contention)."""
    from ..tracking.compare import contention_of

    share, disturbed = contention_of(s)
    return f"cpu {'n/a' if share is None else f'{share * 100:.0f}%'}" + (" DISTURBED" if disturbed else "")


def _pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:+.1f}%"


def render(r) -> str:
    c = r.candidate.summary
    out = []
    if r.work_diff:
        diffs = "; ".join(f"{k} {si(a)} -> {si(z)} ({(z / a - 1) * 100:+.1f}%)" if a else f"{k} {a} -> {z}"
                          for k, (a, z) in r.work_diff.items())
        out.append(f"!! WORK DIFFERS: {diffs}")
        out.append("!! a change of work explains a change of time; the latency verdict below still stands")
    if r.mismatch:
        out.append("!! CONFIG DIFFERS (--force): " + ", ".join(f"{k} {a!r} -> {z!r}" for k, (a, z) in r.mismatch.items()))
    for name, run in (("baseline", r.baseline), ("candidate", r.candidate)):
        s = run.summary
        out.append(f"{name:<10} {run.run_id}  ({s.get('git_commit') or '?'})  {_machine(s)}  {run.path}")
    out.append(f"config     {c.get('config_key')}")
    out.append(f"noise      between-run ±{r.noise_sd * 100:.1f}% per run (log SD): {r.noise_source}")
    out.append("")
    head = ["metric", "baseline", "candidate", "change", f"{r.level * 100:.0f}% interval", "verdict"]
    rows = []
    for m in r.metrics:
        interval = "exact" if m.low == m.high else f"[{_pct(m.low)}, {_pct(m.high)}]"
        flag = "  <- fails" if m.regression and m.name in r.fail_on else ""
        rows.append([m.label, _fmt(m.name, m.baseline), _fmt(m.name, m.candidate), _pct(m.change), interval,
                     m.verdict + flag])
    from ..core.text import table

    out += table(head, rows, right={1, 2, 3})
    out.append("")
    out.append(_conclusion(r))
    return "\n".join(out)


def _conclusion(r) -> str:
    lat = next(m for m in r.metrics if m.name == "latency")
    lines = []
    if r.disturbed:
        lines.append(f"inconclusive ({r.disturbed}): a busy machine, not the code, may explain any change of time. "
                     "Rerun both on a quiet machine, or time them interleaved: python -m harness ab BASELINE.py "
                     "CANDIDATE.py" + ("; --strict: exit 2" if r.strict else ""))
    if r.regressed:
        lines.append(f"REGRESSION in {', '.join(r.regressed)} (threshold {r.threshold * 100:g}%): exit 1")
    elif not r.disturbed and lat.verdict == "inconclusive":
        lines.append("inconclusive: between-run noise can explain this change. For a verdict you can trust, time the "
                     "two versions interleaved: python -m harness ab BASELINE.py CANDIDATE.py "
                     "(scenario files of the two versions; add --isolate --baseline-python OLD_ENV/bin/python "
                     "for two environments)")
    elif not r.disturbed:
        lines.append(f"no regression beyond the noise (threshold {r.threshold * 100:g}%)")
    return "\n".join(lines)
