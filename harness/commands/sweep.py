"""``python -m harness sweep SCENARIO --batch-sizes 1,2,4,8 [--workload generate --prompt-lens 32,128]``:
one run per point, a table and a plot."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import HarnessError
from ..core.units import percent, seconds, si
from . import options
from .history import machine_cell


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a scenario over batch sizes, dtypes, threads and workload options "
                                     "(--prompt-lens, --optimizers ...): sweep.csv and a plot",
                       description="One full run (run directory, history row) per point of the product of every "
                                   "list given: batch sizes x dtypes x threads x each workload option's list "
                                   "(--prompt-lens, --new-tokens-list, --optimizers); a failing point (out of "
                                   "memory, unsupported dtype) is recorded with its reason and the sweep goes on. "
                                   "Writes LOGDIR/<scenario>/sweeps/<id>/sweep.csv and sweep.png; a progress bar "
                                   "with ETA goes to stderr.")
    p.add_argument("scenario", help="a built-in scenario, a scenario .py file, or a model by name (timm:NAME, ...)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated, e.g. 1,2,4,8 (default: the scenario's)")
    p.add_argument("--dtypes", default=None, help="comma-separated, e.g. float32,bfloat16 (default: the scenario's)")
    p.add_argument("--threads", dest="threads_list", default=None,
                   help="comma-separated torch thread counts, e.g. 1,2 (default: torch's)")
    options.add_scenario_options(p, sweep=True)
    options.add_timing_options(p)
    p.add_argument("--no-plot", action="store_true", help="skip sweep.png")
    p.add_argument("--json", action="store_true", help="print the points as JSON on stdout")
    p.add_argument("--executor", choices=["local", "submitit"], default="local",
                   help="local: points one after another here (default); submitit: a Slurm job array")
    p.add_argument("--submitit-local", action="store_true",
                   help="with --executor submitit: submitit's local executor (same code path, no Slurm)")
    p.add_argument("--slurm-partition", default=None, help="Slurm partition for --executor submitit")
    p.add_argument("--slurm-gpus-per-node", type=int, default=None, help="GPUs per job for --executor submitit")
    p.add_argument("--slurm-time", type=int, default=None, metavar="MINUTES", help="time limit per job")
    p.set_defaults(func=main)


def _lists(args: argparse.Namespace, spec) -> dict:
    """Every list of the sweep, checked before torch is imported (exit 2 with one line otherwise)."""
    from ..tracking.sweep import check_swept, parse_dtypes, parse_ints

    lists = dict(batch_sizes=parse_ints(args.batch_sizes, "--batch-sizes") if args.batch_sizes is not None else None,
                 dtypes=parse_dtypes(args.dtypes) if args.dtypes is not None else None,
                 threads=parse_ints(args.threads_list, "--threads") if args.threads_list is not None else None,
                 lists=options.option_lists(args))
    if spec.workload is not None:
        check_swept(spec.workload, lists["lists"], spec.workload_options)
    if not any(lists.values()):
        raise HarnessError("nothing to sweep: give --batch-sizes, --dtypes, --threads or a workload option's list "
                           "(--prompt-lens, --new-tokens-list, --optimizers)")
    return lists


def main(args: argparse.Namespace) -> int:
    spec = options.spec_from_args(args)  # every flag checked before torch is imported
    lists = _lists(args, spec)
    from ..tracking.sweep import sweep_spec

    result = sweep_spec(spec, **lists, progress=True, plot=not args.no_plot, executor=args.executor,
                        submitit_local=args.submitit_local,
                        slurm={"slurm_partition": args.slurm_partition,
                               "slurm_gpus_per_node": args.slurm_gpus_per_node, "slurm_time_min": args.slurm_time})
    if args.json:
        from ..core.fsio import to_json

        sys.stdout.write(to_json({"sweep_id": result.sweep_id, "scenario": result.scenario, "workload": result.workload,
                                  "path": str(result.path), "plot": str(result.plot) if result.plot else None,
                                  "points": result.rows}))
    else:
        print(render(result))
    if not any(r["status"] == "ok" for r in result.rows):
        raise HarnessError(f"every point of the sweep failed (first: {result.rows[0]['reason']}); "
                           f"see {result.path}/sweep.csv")
    return 0


def _table_columns(result) -> list[tuple[str, Callable[[dict], str], bool]]:
    """(header, cell of a row, right-aligned) of each table column: the point (batch, dtype, threads, the
    swept options), the p50 and beside it the workload's phase p50s (generate: ttft, decode step), rates."""
    from ..tracking.sweep import _caption

    def ok(r: dict) -> bool:
        return r["status"] == "ok"

    def secs(col: str) -> Callable[[dict], str]:
        return lambda r: seconds(r[col]) if ok(r) and r[col] is not None else ""

    return [
        ("batch", lambda r: str(r["batch_size"]), True),
        ("dtype", lambda r: str(r["dtype"]), False),
        ("threads", lambda r: str(r["threads"] if r["threads"] is not None else "default"), False),
        *((_caption(k), lambda r, k=k: str(r[k]), True) for k in result.swept),
        ("status", lambda r: r["status"], False),
        ("p50", secs("latency_p50_s"), True),
        *((_phase_head(c, result), secs(c), True) for c in result.phase_columns),
        ("throughput", lambda r: si(r["throughput_samples_per_s"], "/s")
         if ok(r) and r["throughput_samples_per_s"] else "", True),
        ("achieved", lambda r: si(r["achieved_flop_per_s"], "FLOP/s") if ok(r) else "", True),
        ("util", lambda r: percent(r["utilization"]) if ok(r) and r["utilization"] is not None else "", True),
        ("cpu share", lambda r: machine_cell(r) if ok(r) else "", True),
        ("run / reason", lambda r: (r["run_id"] or "") if ok(r) else (r["reason"] or ""), False),
    ]


def _phase_head(column: str, result) -> str:
    """A phase column's header: ``decode step``; ``optimizer p50`` when a swept option has that name."""
    from ..tracking.sweep import _caption

    head = column.removesuffix("_p50_s").replace("_", " ")
    return f"{head} p50" if head in {_caption(k) for k in result.swept} else head


def render(result) -> str:
    """The terminal table (one line per point) under a title naming the workload and the swept dimension."""
    from ..pipeline import workloads
    from ..tracking.sweep import _caption

    cols = _table_columns(result)
    rows = [[cell(r) for _, cell, _ in cols] for r in result.rows]
    from ..core.text import table

    cls = workloads.cls_for(result.workload)
    word = cls.word if cls is not None else "iteration"
    out = [f"sweep {result.sweep_id} of {result.scenario}: {result.workload}, p50 per {word}, "
           f"over {_caption(result.x)}"]
    out += table([h for h, _, _ in cols], rows, right={i for i, c in enumerate(cols) if c[2]})
    n_bad = len(result.failed)
    n_loud = sum(bool(r.get("disturbed")) for r in result.rows)
    out.append(f"{len(rows) - n_bad} point(s) ok, {n_bad} failed"
               + (f"; {n_loud} measured on a DISTURBED machine (not comparable)" if n_loud else ""))
    out.append(f"table: {result.path}/sweep.csv" + (f"   plot: {result.plot}" if result.plot else ""))
    return "\n".join(out)
