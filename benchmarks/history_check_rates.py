"""How often does `harness history check` call identical code a regression, and how often does it see a step?

1. ``--runs N`` real ``harness run`` processes of benchmarks/scenarios/chain_20.py (one thread, back to back,
   each its own process as CI runs them) into ``--logdir`` (skipped with ``--reuse``);
2. for every run ``i`` after the first ``--min-runs``: the history up to run ``i`` (its own LOGDIR: a
   history.csv of those rows, the run directories linked) is checked as it stood then:
   * "identical": run ``i`` as measured (same code as every run before it): a regression is a false positive;
   * "+E %": the same, with run ``i``'s recorded samples and p50 multiplied by 1 + ``--effect`` (an injected
     timing step on real samples; the counted work is unchanged, so only the timing evidence can find it).
Prints both rates with 95 % Clopper-Pearson intervals. The checks of one history are not independent
trials (each shares its window with its neighbours): read the intervals as optimistic.

    python benchmarks/history_check_rates.py --runs 30 --logdir /tmp/hc --effect 0.10
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness.tracking import check, history  # noqa: E402
from regression_power import clopper_pearson  # noqa: E402

RUN = ["--threads", "1", "--iters", "30", "--warmup", "3", "--active", "1", "--top", "0"]


def record(logdir: Path, runs: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    scen = ROOT / "benchmarks" / "scenarios" / "chain_20.py"
    for i in range(runs):
        p = subprocess.run([sys.executable, "-m", "harness", "run", str(scen), "--logdir", str(logdir), *RUN],
                           env=env, capture_output=True, text=True)
        print(f"run {i + 1}/{runs}: exit {p.returncode}", flush=True)


def as_of(src: Path, rows: pd.DataFrame, dest: Path, effect: float) -> Path:
    """A LOGDIR holding ``rows`` (its run directories linked); the last run scaled by 1 + effect."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for d in src.iterdir():
        if d.is_dir():
            (dest / d.name).symlink_to(d.resolve())
    rows = rows.copy()
    if effect:
        last = rows.index[-1]
        run = dest / "scaled" / str(rows.at[last, "run_id"])
        shutil.copytree(src / str(rows.at[last, "run_dir"]), run)
        s = pd.read_csv(run / "samples.csv")
        s["latency_s"] *= 1 + effect
        s.to_csv(run / "samples.csv", index=False)
        rows.at[last, "run_dir"] = str(run)
        for c in ("latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_mean_s"):
            rows.at[last, c] *= 1 + effect
    cols = list(rows.columns)
    (dest / "history.csv").write_bytes(history.frame_bytes(rows, cols))
    return dest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--logdir", type=Path, required=True)
    p.add_argument("--reuse", action="store_true", help="check the runs already in --logdir")
    p.add_argument("--effect", type=float, default=0.10)
    p.add_argument("--min-runs", type=int, default=5)
    p.add_argument("--window", type=int, default=10)
    a = p.parse_args()
    if not a.reuse:
        record(a.logdir, a.runs)
    df = history.read(a.logdir)
    print(f"{len(df)} runs, {int(df['disturbed'].fillna(0).astype(bool).sum())} disturbed")
    tally: dict[str, list[tuple[str, bool]]] = {"identical": [], f"+{a.effect * 100:g} %": []}
    for i in range(a.min_runs + 1, len(df)):
        for kind, eff in zip(tally, (0.0, a.effect)):
            ld = as_of(a.logdir, df.iloc[:i + 1], a.logdir.parent / f"{a.logdir.name}.asof", eff)
            (c,) = check.check(ld, window=a.window, min_runs=a.min_runs).configs
            tally[kind].append(("regression" if c.regression else c.verdict, c.basis is not None))
    for kind, verdicts in tally.items():
        judged = [v for v, j in verdicts if j]  # a timed estimate was made (quiet latest run, enough history)
        k, n = judged.count("regression"), len(judged)
        lo, hi = clopper_pearson(k, n)
        others = pd.Series([v for v, _ in verdicts if v != "regression"]).value_counts().to_dict()
        print(f"{kind}: regression in {k}/{n} judged checks (95 % CI {lo:.2f}-{hi:.2f}) of {len(verdicts)}; "
              f"verdicts other than regression: {others}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
