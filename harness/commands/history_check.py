"""``python -m harness history check``: is the latest run of each config a step away from the window before it?

The verb is ``history``'s: :func:`harness.cli.main` turns ``history check ...`` into this parser's
name (``history-check``), so ``history [SCENARIO]`` keeps working; a scenario literally named
``check`` is shown by ``history check.py`` (a file name selects by its stem).
"""
from __future__ import annotations

import argparse
import json
import math

from ..core.units import percent, seconds, si

NAME = "history-check"
FORMATS = ("text", "markdown", "json")


def add_parser(sub) -> None:
    # no help=: the verb list shows `history`, whose help names `history check`
    p = sub.add_parser(
        NAME, prog="python -m harness history check",
        description="For each config in LOGDIR/history.csv: is the latest run (or the latest K together) a "
                    "step away from the steady window of quiet runs before it? The latest runs' samples against "
                    "the window's, the interval widened by the between-run noise history shows; disturbed runs "
                    "are left out and counted; counted work that changed is exact evidence. Exit codes: 0 no "
                    "regression (incl. inconclusive and not enough history), 1 regression, 2 bad input.")
    p.add_argument("--logdir", default="logs", help="where runs are written (default: logs)")
    p.add_argument("--config", default=None, metavar="KEY",
                   help="only this config key (as in history.csv), or every config of this scenario name")
    p.add_argument("--metric", default="latency_p50", metavar="NAME",
                   help="latency_p50 (default), <phase>_p50 (a phase column of history.csv: decode_step_p50, "
                        "forward_p50...), throughput_samples_per_s, achieved_flop_per_s, or a counted one: macs, "
                        "flops, params, peak_memory_bytes (exact)")
    p.add_argument("--window", type=int, default=10, metavar="N",
                   help="the quiet runs before the latest that form the baseline (default 10); it starts after "
                        "the last step inside it")
    p.add_argument("--last", "--latest", dest="latest", type=int, default=1, metavar="K",
                   help="judge the last K runs together against the window before them (default 1)")
    p.add_argument("--min-runs", type=int, default=5, metavar="M",
                   help="fewer quiet runs in the window than this: 'not enough history', exit 0 (default 5)")
    p.add_argument("--threshold", default="5%", help="the smallest step that is a regression (default 5%%)")
    p.add_argument("--level", type=float, default=0.98, help="interval level (default 0.98)")
    p.add_argument("--format", default="text", choices=FORMATS,
                   help="text (default), markdown (a table for a CI job summary: $GITHUB_STEP_SUMMARY) or json")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..tracking import check
    from ..tracking.compare import parse_threshold

    res = check.check(args.logdir, config=args.config, metric=args.metric, window=args.window, latest=args.latest,
                      threshold=parse_threshold(args.threshold), level=args.level, min_runs=args.min_runs)
    if args.format == "json":
        print(json.dumps(res.as_dict(), indent=2, default=_json_default))
    elif args.format == "markdown":
        print(render_markdown(res))
    else:
        print(render_text(res))
    return res.exit_code


def _json_default(v):
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


# --------------------------------------------------------------------------- rendering

def value(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if unit == "s":
        return seconds(v)
    if unit == "":
        return si(v)
    return si(v, unit)


def pct(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "n/a" if v is None else ("+inf" if v > 0 else "-inf")
    return f"{v * 100:+.1f} %"


def interval(c) -> str:
    if c.low is None or c.high is None or c.basis in (None, "exact"):
        return "exact" if c.basis == "exact" else "-"
    return f"[{pct(c.low)}, {pct(c.high)}]"


def _cells(c) -> list[str]:
    n = len(c.baseline_runs)
    base = f"{value(c.baseline_value, c.unit)} ({n} run{'s' if n != 1 else ''})" if c.baseline_value is not None \
        else f"- ({n} run{'s' if n != 1 else ''})"
    latest = value(c.latest_value, c.unit) if c.latest_value is not None else "-"
    return [base, latest, pct(c.change) if c.change is not None else "-", interval(c)]


def _header(res) -> str:
    return (f"metric {res.metric} · threshold {percent(res.threshold, 0)} · window {res.window} quiet runs, "
            f"at least {res.min_runs} · latest {res.latest} · {res.level * 100:g} % intervals")


def _closing(res) -> str:
    n = len(res.configs)
    if res.regressions:
        return f"REGRESSION in {len(res.regressions)} of {n} config(s): exit 1"
    return f"no regression in {n} config(s): exit 0"


def render_text(res) -> str:
    from ..core.text import table

    head = ["config", "baseline", "latest", "change", f"{res.level * 100:g}% interval", "verdict"]
    rows = [[c.label, *_cells(c), c.verdict.upper() if c.regression else c.verdict] for c in res.configs]
    out = [f"history check: {_header(res)}", *table(head, rows, right={1, 2, 3})]
    for c in res.configs:
        notes = list(c.notes)
        if c.noise_source and c.basis not in (None, "exact"):
            notes.append(f"between-run noise {c.noise_sd * 100:.1f} % ({c.noise_source})")
        if notes:
            out.append(f"  {c.label}: " + "; ".join(notes))
    out.append(_closing(res))
    return "\n".join(out)


def _md(text: str) -> str:
    """A table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(res) -> str:
    """A job summary: a heading, one table row per config, the notes, the closing line."""
    lines = [f"### Performance history check: {'regression' if res.regressions else 'no regression'}", "",
             _header(res), "",
             f"| config | baseline | latest | change | {res.level * 100:g} % interval | verdict |",
             "|---|---:|---:|---:|---:|---|"]
    for c in res.configs:
        verdict = f"**{_md(c.verdict)}**" if c.regression else _md(c.verdict)
        commit = f" (harness `{_md(c.harness_commit[:7])}`)" if c.harness_commit else ""
        lines.append(f"| {_md(c.label)}{commit} | " + " | ".join(_md(x) for x in _cells(c)) + f" | {verdict} |")
    notes = [(c, c.notes) for c in res.configs if c.notes]
    if notes:
        lines.append("")
        lines += [f"- {_md(c.label)}: " + "; ".join(_md(n) for n in ns) for c, ns in notes]
    lines += ["", f"**{_closing(res)}**"]
    return "\n".join(lines)
