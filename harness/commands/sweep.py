"""``python -m harness sweep SCENARIO --batch-sizes 1,2,4,8``: one run per point, a table and a plot."""
from __future__ import annotations

import argparse
import sys

from ..errors import HarnessError
from ..core.units import percent, seconds, si
from .history import machine_cell


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a scenario over batch sizes (and dtypes, threads): sweep.csv and a plot",
                       description="One full run (run directory, history row) per point of batch size x dtype x "
                                   "threads; a failing point (out of memory, unsupported dtype) is recorded with "
                                   "its reason and the sweep goes on. Writes LOGDIR/<scenario>/sweeps/<id>/"
                                   "sweep.csv and sweep.png; a progress bar with ETA goes to stderr.")
    p.add_argument("scenario", help="a built-in scenario, a scenario .py file, or a model by name (timm:NAME, ...)")
    p.add_argument("--batch-sizes", required=True, help="comma-separated, e.g. 1,2,4,8")
    p.add_argument("--dtypes", default=None, help="comma-separated, e.g. float32,bfloat16 (default: the scenario's)")
    p.add_argument("--threads", default=None, help="comma-separated torch thread counts, e.g. 1,2 (default: torch's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the scenario's)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations per point (default 5)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per point (default 20)")
    p.add_argument("--logdir", default="logs", help="where runs are written (default: logs)")
    p.add_argument("--tag", default=None, help="a label kept in each run's summary and history row")
    p.add_argument("--no-plot", action="store_true", help="skip sweep.png")
    p.add_argument("--json", action="store_true", help="print the points as JSON on stdout")
    p.add_argument("--executor", choices=["local", "submitit"], default="local",
                   help="local: points one after another here (default); submitit: a Slurm job array")
    p.add_argument("--submitit-local", action="store_true",
                   help="with --executor submitit: submitit's local executor (same code path, no Slurm)")
    p.add_argument("--slurm-partition", default=None, help="Slurm partition for --executor submitit")
    p.add_argument("--slurm-gpus-per-node", type=int, default=None, help="GPUs per job for --executor submitit")
    p.add_argument("--slurm-time", type=int, default=None, metavar="MINUTES", help="time limit per job")
    from ..models import add_arguments

    add_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..models import options_from_args
    from ..tracking.sweep import parse_dtypes, parse_ints, sweep

    batch_sizes = parse_ints(args.batch_sizes, "--batch-sizes")
    dtypes = parse_dtypes(args.dtypes)
    threads = parse_ints(args.threads, "--threads") if args.threads is not None else [None]
    for name, v in (("--warmup", args.warmup), ("--iters", args.iters)):
        if v is not None and v < (0 if name == "--warmup" else 1):
            raise HarnessError(f"{name} must be at least {0 if name == '--warmup' else 1}, got {v}")
    result = sweep(args.scenario, batch_sizes, dtypes=dtypes, threads=threads, device=args.device,
                   warmup=args.warmup, iters=args.iters, logdir=args.logdir, tag=args.tag, progress=True,
                   plot=not args.no_plot, model_options=options_from_args(args), executor=args.executor,
                   submitit_local=args.submitit_local,
                   slurm={"slurm_partition": args.slurm_partition, "slurm_gpus_per_node": args.slurm_gpus_per_node,
                          "slurm_time_min": args.slurm_time})
    if args.json:
        from ..core.fsio import to_json

        sys.stdout.write(to_json({"sweep_id": result.sweep_id, "scenario": result.scenario, "path": str(result.path),
                                  "plot": str(result.plot) if result.plot else None, "points": result.rows}))
    else:
        print(render(result))
    ok = [r for r in result.rows if r["status"] == "ok"]
    if not ok:
        raise HarnessError(f"every point of the sweep failed (first: {result.rows[0]['reason']}); "
                           f"see {result.path}/sweep.csv")
    return 0


def render(result) -> str:
    head = ["batch", "dtype", "threads", "status", "p50", "throughput", "achieved", "util", "cpu share", "run / reason"]
    rows = []
    for r in result.rows:
        ok = r["status"] == "ok"
        rows.append([str(r["batch_size"]), str(r["dtype"]), str(r["threads"] if r["threads"] is not None else "default"),
                     r["status"],
                     seconds(r["latency_p50_s"]) if ok else "",
                     si(r["throughput_samples_per_s"], "/s") if ok and r["throughput_samples_per_s"] else "",
                     si(r["achieved_flop_per_s"], "FLOP/s") if ok else "",
                     percent(r["utilization"]) if ok and r["utilization"] is not None else "",
                     machine_cell(r) if ok else "",
                     (r["run_id"] or "") if ok else (r["reason"] or "")])
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.rjust(w) if i in (0, 4, 5, 6, 7, 8) else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [f"sweep {result.sweep_id} of {result.scenario}", fmt(head), fmt(["-" * w for w in widths])]
    out += [fmt(r) for r in rows]
    n_bad = len(result.failed)
    n_loud = sum(bool(r.get("disturbed")) for r in result.rows)
    out.append(f"{len(rows) - n_bad} point(s) ok, {n_bad} failed"
               + (f"; {n_loud} measured on a DISTURBED machine (not comparable)" if n_loud else ""))
    out.append(f"table: {result.path}/sweep.csv" + (f"   plot: {result.plot}" if result.plot else ""))
    return "\n".join(out)
