"""Findings' accuracy: every verifiable finding of a few models, predicted vs measured (README "Findings").

    python benchmarks/findings.py [--scenarios resnet50,mobilenet_v2,...] [--budget-s 10] [--threads 1]
                                  [--iters 10] [--logdir /tmp/findings-bench] [--json out.json]

Per scenario: one run (its findings), then each distinct verifiable change as an in-process A/B
(:func:`harness.findings.verify.verify`). Printed: predicted and measured ratios side by side, the
median |predicted - measured| / measured of the saved share (1 - ratio), and the share of changes
whose direction (faster or not) was right. Scenarios whose workload is not the default are run as
``NAME@workload`` (``tiny_gpt@train``, ``tiny_llama@generate``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT = "resnet50,mobilenet_v2,shufflenet_v2_x1_0,vit_b_16,tiny_gpt@train,tiny_llama@generate"


def one(name: str, args) -> list[dict]:
    from harness.findings.verify import error_of, verify
    from harness.pipeline.run import run_spec
    from harness.pipeline.spec import RunSpec

    target, _, workload = name.partition("@")
    spec = RunSpec(target=target, workload=workload or None, threads=args.threads, warmup=2, iters=args.iters,
                   logdir=args.logdir, batch_size=args.batch_size)
    t0 = time.perf_counter()
    run = run_spec(spec)
    doc = run.findings or {}
    found = [(f["id"], f["saved_share"], f["verifiable"]) for f in doc.get("findings", [])]
    print(f"{name}: {len(found)} findings in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{i} {s:.1%}{'' if v else ' (code change)'}" for i, s, v in found), flush=True)
    out = []
    for entry in verify(doc, spec, 99, budget_s=args.budget_s):
        entry.update(scenario=name, error_of_prediction=error_of(entry))
        print(f"  {entry['side']:<16} predicted {entry['predicted_ratio']:.3f}  measured "
              + (f"{entry['measured_ratio']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}] {entry['verdict']}"
                 if entry["measured_ratio"] is not None else f"- ({entry['error']})"), flush=True)
        out.append(entry)
    return out


def summarize(rows: list[dict]) -> dict:
    measured = [r for r in rows if r["measured_ratio"] is not None]
    errors = [r["error_of_prediction"] for r in measured if r["error_of_prediction"] is not None]
    right = [(r["predicted_ratio"] < 1) == (r["measured_ratio"] < 1) for r in measured]
    return {"changes": len(rows), "measured": len(measured),
            "median_relative_error": statistics.median(errors) if errors else None,
            "direction_right_share": sum(right) / len(right) if right else None,
            "off_by_more_than_2x": sum(1 for r in measured if _off_2x(r))}


def _off_2x(r: dict) -> bool:
    p, m = 1 - r["predicted_ratio"], 1 - r["measured_ratio"]
    return m <= 0 or p <= 0 or max(p / m, m / p) > 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=DEFAULT)
    ap.add_argument("--budget-s", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--logdir", default="/tmp/findings-bench")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for name in args.scenarios.split(","):
        rows += one(name.strip(), args)
    print()
    print("| scenario | change | findings | predicted ratio | measured ratio [98 % interval] | verdict |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        meas = (f"{r['measured_ratio']:.3f} [{r['low']:.3f}, {r['high']:.3f}]" if r["measured_ratio"] is not None
                else f"— ({r['error']})")
        print(f"| {r['scenario']} | `{r['side']}` | {', '.join(r['ids'])} | {r['predicted_ratio']:.3f} | {meas} "
              f"| {r['verdict'] or '—'} |")
    summary = summarize(rows)
    print()
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
