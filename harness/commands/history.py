"""``python -m harness history [SCENARIO] [--plot FILE.png]``: every run, one line each.

``python -m harness history check ...`` is :mod:`.history_check` (step detection over history)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import HarnessError
from ..core.units import percent, seconds, si
from ..tracking.history import row_label as config_label  # noqa: F401 (this module's name for it)


def add_parser(sub) -> None:
    p = sub.add_parser("history", help="table (and plot) of past runs from LOGDIR/history.csv; `history check`: "
                                      "is the latest run a step away from the runs before it",
                       description="Show LOGDIR/history.csv: one line per run, oldest first, with the run's CPU "
                                   "share and a DISTURBED flag when the machine was busy; optionally plot latency "
                                   "and achieved FLOP/s over runs (log axes), one line per config. "
                                   "`history check` judges each config's latest run against the runs before it "
                                   "(see `python -m harness history check --help`).")
    p.add_argument("scenario", nargs="?", default=None,
                   help="only runs of this scenario (name, or a scenario file; a scenario named check: check.py)")
    p.add_argument("--logdir", default="logs", help="where runs are written (default: logs)")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="write a plot of latency and achieved FLOP/s over runs")
    p.add_argument("--last", type=int, default=None, metavar="N", help="only the last N runs")
    p.add_argument("--json", action="store_true", help="print the rows as JSON records")
    p.add_argument("--csv", action="store_true", help="print the rows as CSV (current schema)")
    p.add_argument("--merge", nargs="+", metavar="PATH", default=None,
                   help="add the rows of other LOGDIRs or history.csv files (one per job, where flock is not "
                        "reliable) to this LOGDIR's history, skipping run ids it already has")
    p.add_argument("--migrate", action="store_true",
                   help="rewrite an older-schema history.csv in the current schema (the old file is kept as history.vN.csv)")
    p.set_defaults(func=main)


def select(df, scenario: str | None, logdir: Path):
    if scenario is None:
        return df
    name = scenario
    if name.endswith(".py") or "/" in name:
        name = Path(name).stem
        try:
            from ..pipeline import scenario as scenario_mod

            name = scenario_mod.load(scenario).name
        except HarnessError:
            pass
    sel = df[df["scenario"] == name]
    if sel.empty:
        known = sorted(set(df["scenario"].dropna()))
        raise HarnessError(f"no runs of '{name}' in {logdir / 'history.csv'}"
                           + (f" (it has: {', '.join(known)})" if known else " (it has no runs yet)"))
    return sel


def main(args: argparse.Namespace) -> int:
    from ..tracking import history

    logdir = Path(args.logdir)
    path = history.history_path(logdir)
    if args.merge:
        from ..distributed.histories import merge_histories

        added = merge_histories([Path(x) for x in args.merge], logdir)
        print(f"{added} row{'s' if added != 1 else ''} added to {path}")
        return 0
    if args.migrate:
        backup = history.migrate(logdir)
        if backup is None:
            print(f"{path} is already in schema {history.SCHEMA_VERSION} (or absent); nothing to do")
        else:
            print(f"{path} rewritten in schema {history.SCHEMA_VERSION}; the old file is kept as {backup}")
        return 0
    if not path.exists():
        raise HarnessError(f"no history at {path}: no run has finished in --logdir {logdir} yet "
                           f"(run `python -m harness run SCENARIO --logdir {logdir}`)")
    df = select(history.read(logdir), args.scenario, logdir)
    if args.last is not None:
        if args.last < 1:
            raise HarnessError(f"--last must be at least 1, got {args.last}")
        df = df.tail(args.last)
    if args.json:
        recs = json.loads(df.to_json(orient="records"))
        print(json.dumps(recs, indent=2))
    elif args.csv:
        print(history.frame_bytes(df).decode("utf-8"), end="")
    else:
        print(render_table(df))
    if args.plot:
        out = plot(df, args.plot)
        print(f"plot: {out}")
    return 0


def _short_time(t) -> str:
    if not isinstance(t, str):
        return ""
    return t.replace("T", " ")[:19]


def _ok(v) -> bool:
    if v is None:
        return False
    try:
        return not bool(v != v)  # NaN and pd.NA are missing
    except TypeError:  # pd.NA != pd.NA is NA, whose truth value raises
        return False


def machine_cell(r) -> str:
    """``97%`` (the run's CPU share), ``41% DISTURBED``, or ``-`` when the run did not measure it."""
    share = percent(r["cpu_share"], 0) if _ok(r.get("cpu_share")) else "-"
    return f"{share} DISTURBED" if _ok(r.get("disturbed")) and bool(r["disturbed"]) else share


def render_table(df) -> str:
    head = ["started (UTC)", "run_id", "config", "p50", "p90", "std", "achieved", "util", "cpu share", "commit"]
    rows = []
    for _, r in df.iterrows():
        rows.append([
            _short_time(r["started_at"]),
            str(r["run_id"]),
            config_label(r),
            seconds(r["latency_p50_s"]) if _ok(r["latency_p50_s"]) else "n/a",
            seconds(r["latency_p90_s"]) if _ok(r["latency_p90_s"]) else "n/a",
            seconds(r["latency_std_s"]) if _ok(r["latency_std_s"]) else "n/a",
            si(r["achieved_flop_per_s"], "FLOP/s") if _ok(r["achieved_flop_per_s"]) else "n/a",
            percent(r["utilization"]) if _ok(r["utilization"]) else "n/a",
            machine_cell(r),
            str(r["git_commit"] or ""),
        ])
    if not rows:
        return "no runs"
    from ..core.text import table

    out = table(head, rows, right={3, 4, 5, 6, 7, 8})
    n_cfg = df["config_key"].nunique()
    n_bad = int(sum(_ok(v) and bool(v) for v in df["disturbed"]))
    out.append(f"{len(rows)} run(s), {n_cfg} config(s)"
               + (f"; {n_bad} DISTURBED (a busy machine: their timings are not comparable)" if n_bad else ""))
    return "\n".join(out)


def plot(df, out: str | Path) -> Path:
    """Latency and achieved FLOP/s over runs (:func:`harness.report.trends.history_figure`)."""
    from ..report.trends import history_figure

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise HarnessError(f"--plot {out}: give a .png file name")
    if out.exists() and out.is_dir():
        raise HarnessError(f"--plot {out} is a directory; give a .png file name")
    return history_figure(df, out, config_label)
