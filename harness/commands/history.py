"""``python -m harness history [SCENARIO] [--plot FILE.png]``: every run, one line each."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import HarnessError
from ..core.units import percent, seconds, si


def add_parser(sub) -> None:
    p = sub.add_parser("history", help="table (and plot) of past runs from LOGDIR/history.csv",
                       description="Show LOGDIR/history.csv: one line per run, oldest first; optionally plot "
                                   "latency and achieved FLOP/s over runs, one line per config.")
    p.add_argument("scenario", nargs="?", default=None, help="only runs of this scenario (name, or a scenario file)")
    p.add_argument("--logdir", default="logs", help="where runs are written (default: logs)")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="write a plot of latency and achieved FLOP/s over runs")
    p.add_argument("--last", type=int, default=None, metavar="N", help="only the last N runs")
    p.add_argument("--json", action="store_true", help="print the rows as JSON records")
    p.add_argument("--csv", action="store_true", help="print the rows as CSV (current schema)")
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
        print(df.to_csv(index=False), end="")
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


def config_label(r) -> str:
    tag = r.get("tag")
    bits = [str(r.get("scenario")), f"bs {_i(r.get('batch_size'))}", str(r.get("dtype")), str(r.get("device")),
            f"{_i(r.get('threads'))} thr"]
    if isinstance(tag, str) and tag:
        bits.append(f"tag {tag}")
    return " · ".join(bits)


def _i(v) -> str:
    try:
        return str(int(v))
    except (TypeError, ValueError):
        return "?"


def _ok(v) -> bool:
    if v is None:
        return False
    try:
        return not bool(v != v)  # NaN and pd.NA are missing
    except TypeError:  # pd.NA != pd.NA is NA, whose truth value raises
        return False


def render_table(df) -> str:
    head = ["started (UTC)", "run_id", "config", "p50", "p90", "std", "achieved", "util", "commit"]
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
            str(r["git_commit"] or ""),
        ])
    if not rows:
        return "no runs"
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(head)]
    right = {3, 4, 5, 6, 7}
    fmt = lambda cells: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()  # noqa: E731
    out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    n_cfg = df["config_key"].nunique()
    out.append(f"{len(rows)} run(s), {n_cfg} config(s)")
    return "\n".join(out)


def plot(df, out: str | Path) -> Path:
    """Latency (p50, with p90 as the top of a band) and achieved FLOP/s over runs, one line per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..core.fsio import atomic_write_bytes

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise HarnessError(f"--plot {out}: give a .png file name")
    if out.exists() and out.is_dir():
        raise HarnessError(f"--plot {out} is a directory; give a .png file name")
    if df.empty:
        raise HarnessError("nothing to plot: no runs selected")
    df = df.copy()
    df["t"] = pd.to_datetime(df["started_at"], utc=True, errors="coerce", format="ISO8601")
    df = df.sort_values(["t", "run_id"], kind="stable", na_position="first").reset_index(drop=True)
    df["x"] = range(1, len(df) + 1)  # run number over the selection: days of idle time take no room
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, constrained_layout=True)
    groups = list(df.groupby("config_key", sort=False))
    cmap = plt.get_cmap("tab10")
    for i, (key, g) in enumerate(groups[:10]):
        color = cmap(i % 10)
        label = config_label(g.iloc[0])
        p50 = g["latency_p50_s"].astype(float) * 1e3
        p90 = g["latency_p90_s"].astype(float) * 1e3
        ax1.plot(g["x"], p50, marker="o", ms=4, color=color, label=label)
        ax1.fill_between(g["x"], p50, p90, color=color, alpha=0.15, linewidth=0)
        ax2.plot(g["x"], g["achieved_flop_per_s"].astype(float) / 1e9, marker="o", ms=4, color=color, label=label)
    ax1.set_ylabel("latency (ms)\nline p50, band up to p90")
    ax2.set_ylabel("achieved GFLOP/s")
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    span = ""
    if df["t"].notna().any():
        t0, t1 = df["t"].min(), df["t"].max()
        span = f"  ({t0:%Y-%m-%d %H:%M} to {t1:%Y-%m-%d %H:%M} UTC)"
    ax2.set_xlabel(f"run number, oldest first{span}")
    title = "harness history"
    scen = sorted(set(df["scenario"].dropna()))
    if len(scen) == 1:
        title += f": {scen[0]}"
    if len(groups) > 10:
        title += f" (first 10 of {len(groups)} configs)"
    ax1.set_title(title)
    ax1.legend(fontsize=8, loc="best")
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out
