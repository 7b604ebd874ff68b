"""Render ``python -m harness ab --json`` output (ab.json) as a GitHub job-summary section.

    python ab_markdown.py ab.json [--exit-code N] >> "$GITHUB_STEP_SUMMARY"

Only the standard library: the summary is written even when the harness could not be imported.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{(v - 1) * 100:+.1f} %"


def secs(v: float | None) -> str:
    if v is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v / 1e-9:.3g} ns"


def rows(ab: dict) -> list[str]:
    """One row per timed figure (the iteration, each phase of a workload of several), then counted work."""
    level = f"{ab.get('level', 0.98) * 100:g} %"
    out = [f"| figure | main | PR | change | {level} interval | verdict |", "|---|---:|---:|---:|---:|---|"]
    figures = {"iteration": ab.get("iteration") or {}, **(ab.get("phases") or {})}
    judged = ab.get("judged_phase") or "iteration"
    for name, f in figures.items():
        if name != "iteration" and len(figures) <= 2:
            continue  # a forward: the phase is the iteration
        verdict = ab.get("verdict", "") if name == judged else ""
        if verdict == "slower":
            verdict = "**slower**"
        out.append(f"| {f.get('word', name)} (median) | {secs(f.get('baseline_median_s'))} | "
                   f"{secs(f.get('candidate_median_s'))} | {pct(f.get('ratio'))} | "
                   f"[{pct(f.get('low'))}, {pct(f.get('high'))}] | {verdict} |")
    for key, w in (ab.get("work") or {}).items():
        b, c = w.get("baseline"), w.get("candidate")
        change = f"{(c / b - 1) * 100:+.1f} %" if b and c is not None else "n/a"
        out.append(f"| {key} (counted) | {b} | {c} | {change} | exact | {'differs' if b != c else ''} |")
    return out


def render(ab: dict, exit_code: int) -> str:
    verdict = ab.get("verdict", "?")
    lines = [f"### A/B of the model code: PR against main: {verdict}", ""]
    if ab.get("work_differs"):
        lines += ["The counted work differs: the PR changed the model (exact, not a timing question).", ""]
    lines += rows(ab)
    reason = ab.get("inconclusive_reason")
    if reason:
        lines += ["", f"inconclusive: {reason}"]
    lines += ["", f"{ab.get('pairs', '?')} block pairs in {ab.get('generations', '?')} generations "
              f"(--isolate: each side in its own process), threshold {ab.get('threshold', 0) * 100:g} %; "
              f"`harness ab` exit {exit_code}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ab_json", type=Path)
    p.add_argument("--exit-code", type=int, default=None, help="ab's exit code (default: the JSON's exit_code)")
    args = p.parse_args(argv)
    try:
        ab = json.loads(args.ab_json.read_text())
    except (OSError, ValueError) as exc:
        print(f"### A/B of the model code: no result\n\n`harness ab` wrote no JSON ({exc})")
        return 2
    code = ab.get("exit_code", 2) if args.exit_code is None else args.exit_code
    print(render(ab, code))
    return 0


if __name__ == "__main__":
    sys.exit(main())
