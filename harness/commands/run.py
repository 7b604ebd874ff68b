"""``python -m harness run SCENARIO``: the main job, with a short readable summary."""
from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import HarnessError
from ..report.terminal import SORT_KEYS, check_phase, render_phase_ops, render_summary
from . import options

def add_parser(sub) -> None:
    p = sub.add_parser("run", help="measure, profile and count a scenario; write a run directory",
                       description="Measure un-profiled latency, profile with torch.profiler, count the work, "
                                   "join them per operator and module, and write LOGDIR/<scenario>/<run_id>/.")
    p.add_argument("scenario", help="a built-in scenario (see `list`), a scenario .py file, or a model by name: "
                                    "torchvision:NAME, timm:NAME, hf:ID_OR_PATH")
    options.add_scenario_options(p)
    options.add_timing_options(p)
    options.add_profile_options(p)
    p.add_argument("--phase", default=None, metavar="NAME",
                   help="the phase whose operator table to show (default: every phase, or the one with the most "
                        "profiled op time when there are more than 3)")
    p.add_argument("--top", type=int, default=10, help="operators to show (default 10; 0 hides the table)")
    p.add_argument("--sort-by", default="self_time", choices=sorted(SORT_KEYS), metavar="KEY",
                   help="operator table order: self_time (default: self time incl. the kernels an op dispatches), "
                        "self_cpu_time_total, cpu_time_total, self_cpu_memory_usage, cpu_memory_usage, "
                        "device_time_total, self_device_time_total, flops, calls")
    p.add_argument("--all-rows", action="store_true",
                   help="also list profiler labels and nested kernels, with torch.profiler's own columns")
    p.add_argument("--json", action="store_true", help="print summary.json on stdout (progress goes to stderr)")
    p.add_argument("--memory-budget", default=None, metavar="SIZE",
                   help="refuse the run up front (exit 2, nothing written) when the memory forecast on meta is over "
                        "SIZE (16GiB, 500MB, bytes); the error names the split and the largest batch that fits")
    p.add_argument("--verify-findings", type=int, nargs="?", const=1, default=None, metavar="N",
                   help="after the run, measure the top N verifiable findings (default 1) as in-process A/B verdicts "
                        "and print predicted vs measured (README \"Findings\")")
    p.add_argument("--verify-budget-s", type=float, default=10.0, metavar="SECONDS",
                   help="A/B budget of each verified finding (default 10)")
    from ..distributed.command import add_options as add_distributed_options

    add_distributed_options(p)  # --nproc-per-node, --backend, --rank-timeout-s
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise HarnessError(f"--top must be 0 or more, got {args.top}")
    spec = options.spec_from_args(args)  # every flag checked before torch is imported
    check_declared_phase(args.phase, spec.workload)
    if args.memory_budget is not None:
        from ..memory.budget import parse_budget
        from ..memory.oom import check_budget

        check_budget(spec, parse_budget(args.memory_budget))
    check_verify(args)
    from ..distributed import command as distributed

    if distributed.wanted(args):  # several ranks: launched here, or this process is a torchrun rank
        return distributed.main(args, spec)
    from ..pipeline.run import run_spec

    interactive = sys.stderr.isatty() and not args.json

    def progress(stage: str) -> None:
        if interactive:
            print(f"\r\033[K{stage}…", end="", file=sys.stderr, flush=True)

    run = run_spec(spec, progress=progress)
    if interactive:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.json:
        from ..core.fsio import to_json

        sys.stdout.write(to_json(run.summary))
        return 0
    print(render_summary(run.summary))
    from ..findings.render import document_terminal

    if block := document_terminal(run.findings):  # README "Findings": the top 3
        print()
        print(block)
    if args.top and run.summary.get("compile") and len(run.kernels) and not (args.all_rows or args.phase):
        from ..report.kernels_table import render_top_kernels

        print()
        print(render_top_kernels(run.kernels, run.summary, top=args.top))
    elif args.top:
        print()
        print(render_phase_ops(run.ops, run.summary, top=args.top, sort_by=args.sort_by, all_rows=args.all_rows,
                               phase=args.phase))
    print()
    print(f"inspect:  tensorboard --logdir {shlex.quote(str(args.logdir))}")
    print(f"          open {shlex.quote(str(run.path))}/report.html   (works offline)")
    if args.verify_findings:
        from ..findings.render import verdict_lines
        from ..findings.verify import save, verify

        results = verify(run.findings, spec, args.verify_findings, budget_s=args.verify_budget_s)
        print()
        print(verdict_lines(results))
        if run.path is not None:
            print(f"  saved: {save(run.path, results, n=args.verify_findings, budget_s=args.verify_budget_s)}")
    return 0


def check_verify(args: argparse.Namespace) -> None:
    """``--verify-findings N``: N >= 1, a positive budget, a single-process run (exit 2 otherwise)."""
    if args.verify_findings is None:
        return
    if args.verify_findings < 1:
        raise HarnessError(f"--verify-findings must be at least 1, got {args.verify_findings}")
    if args.verify_budget_s <= 0:
        raise HarnessError(f"--verify-budget-s must be positive, got {args.verify_budget_s}")
    if getattr(args, "nproc_per_node", None) is not None:
        raise HarnessError("--verify-findings runs in one process; leave out --nproc-per-node")
    if args.json:
        raise HarnessError("--verify-findings prints its verdicts on the terminal; leave out --json")


def check_declared_phase(phase: str | None, workload: str | None) -> None:
    """Exit 2 before the run for a ``--phase`` the ``--workload`` given does not declare. A workload
    named by the scenario file is known only once it is loaded: the table checks it after the run."""
    from ..pipeline.workloads import cls_for

    cls = cls_for(workload) if phase is not None and workload is not None else None
    if cls is not None:
        check_phase(phase, cls.phases, whose=f"--workload {cls.name}'s")


def workload_options(args: argparse.Namespace) -> dict:
    """The workload options given on the command line (kept for callers of the old name)."""
    return options.workload_options(args)
