"""``python -m harness run SCENARIO --nproc-per-node N`` and ``torchrun ... -m harness run SCENARIO``.

:func:`main` is called by :mod:`harness.commands.run` when ``--nproc-per-node`` is given or
the process is a rank (``RANK`` and ``WORLD_SIZE`` set by torchrun). The launcher prints the
job; under torchrun rank 0 prints it and the other ranks print nothing.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from ..core.units import percent, seconds, si
from ..errors import HarnessError
from . import ranks

if TYPE_CHECKING:
    from ..pipeline.spec import RunSpec
    from .job import JobSpec

DEFAULT_RANK_TIMEOUT_S = 300.0


def add_options(p: argparse.ArgumentParser) -> None:
    """``run``'s multi-rank flags."""
    p.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="launch N ranks on this machine through torch.distributed's elastic agent (torchrun)")
    p.add_argument("--backend", default=None, choices=ranks.BACKENDS,
                   help="process group backend (default: gloo on CPU, nccl on CUDA)")
    p.add_argument("--rank-timeout-s", type=float, default=DEFAULT_RANK_TIMEOUT_S, metavar="S",
                   help="a collective waits at most S seconds for the other ranks (default 300)")


def wanted(args: argparse.Namespace) -> bool:
    return args.nproc_per_node is not None or ranks.is_rank_process()


def job_spec(args: argparse.Namespace, spec: "RunSpec") -> "JobSpec":
    """The job's spec: the run spec every rank runs, plus the job's own fields."""
    from .job import JobSpec

    if not args.rank_timeout_s > 0:
        raise HarnessError(f"--rank-timeout-s must be above 0, got {args.rank_timeout_s}")
    return JobSpec(run=spec, backend=args.backend, rank_timeout_s=float(args.rank_timeout_s))


def main(args: argparse.Namespace, spec: "RunSpec") -> int:
    from .job import run_rank
    from .launch import launch

    job = job_spec(args, spec)
    if ranks.is_rank_process():
        if args.nproc_per_node is not None:
            raise HarnessError("this process is already a rank of a torchrun job (RANK and WORLD_SIZE are set); "
                               "drop --nproc-per-node")
        summary = run_rank(job)
        if summary is None:
            return 0
    else:
        summary = launch(job, args.nproc_per_node)
    print_job(args, summary)
    return 0


def print_job(args: argparse.Namespace, s: dict) -> None:
    if args.json:
        from ..core.fsio import to_json

        sys.stdout.write(to_json(s))
        return
    from ..report.terminal import render_summary

    print(render_summary(s))
    print()
    print(render_ranks(s))
    print()
    print(f"inspect:  tensorboard --logdir {shlex.quote(str(args.logdir))}   (PYTORCH_PROFILER: one worker per rank)")
    print(f"          open {shlex.quote(str(s['path']))}/report.html   (rank 0's tables; rank<k>/ holds each rank's)")


def render_ranks(s: dict) -> str:
    """The per-rank table and the straggler."""
    head = ["rank", "host", "device", "threads", "p50", "p90", "FLOP/s", "util", "comm", "comm share"]
    rows = [[str(r["rank"]), str(r["host"]), str(r["device_name"] if r["device"] == "cuda" else r["device"]),
             str(r["threads"]), seconds(r["latency_s"]["p50"]), seconds(r["latency_s"]["p90"]),
             si(r["achieved_flop_per_s"], "FLOP/s"), percent(r["utilization"]) if r["utilization"] is not None else "",
             seconds(r["comm_time_s"]) if r["comm_time_s"] is not None else "",
             percent(r["comm_share"]) if r["comm_share"] is not None else ""] for r in s["ranks"]]
    from ..core.text import table

    slow = s["ranks"][s["slowest_rank"]]
    out = [f"{s['world_size']} ranks · {s['backend']} · job: {si(s['achieved_flop_per_s'], 'FLOP/s')} "
           f"(sum of rank FLOPs / slowest rank's p50)"]
    out += table(head, rows, right=set(range(len(head))) - {1, 2})
    imb = s.get("imbalance")
    out.append(f"straggler: rank {slow['rank']} ({slow['host']}), p50 {seconds(slow['latency_s']['p50'])}"
               + (f", {imb:.2f}x the fastest rank" if imb else "")
               + (f"   · time in collectives {percent(s['comm_share'])} of an iteration"
                  if s.get("comm_share") is not None else ""))
    return "\n".join(out)
