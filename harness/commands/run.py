"""``python -m harness run SCENARIO``: the main job, with a short readable summary."""
from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import HarnessError
from ..report.terminal import SORT_KEYS, render_summary, render_top_ops

def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every verb that runs a scenario shares."""
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the scenario's, else 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the scenario's, else cpu)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the scenario's, else float32)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations before timing (default 5)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations, each synchronized (default 20)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--logdir", default="logs", help="where runs are written (default: logs)")
    p.add_argument("--tag", default=None, help="a label kept in summary.json and history.csv")
    p.add_argument("--workload", default=None, metavar="NAME",
                   help="how the model is driven: forward, generate or train (default: the scenario's `workload`, "
                        "else forward)")
    from ..models import add_arguments as add_model_arguments

    add_model_arguments(p)
    p.add_argument("--prompt-len", type=int, default=None, help="generate: prompt tokens (default: the scenario's)")
    p.add_argument("--new-tokens", type=int, default=None, help="generate: tokens to generate (default: the scenario's)")
    p.add_argument("--optimizer", default=None, choices=("sgd", "adamw", "none"),
                   help="train: the optimizer (default: the scenario's make_optimizer, else adamw)")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="measure, profile and count a scenario; write a run directory",
                       description="Measure un-profiled latency, profile with torch.profiler, count the work, "
                                   "join them per operator and module, and write LOGDIR/<scenario>/<run_id>/.")
    p.add_argument("scenario", help="a built-in scenario (see `list`), a scenario .py file, or a model by name: "
                                    "torchvision:NAME, timm:NAME, hf:ID_OR_PATH")
    add_run_options(p)
    p.add_argument("--top", type=int, default=10, help="operators to show (default 10; 0 hides the table)")
    p.add_argument("--sort-by", default="self_time", choices=sorted(SORT_KEYS), metavar="KEY",
                   help="operator table order: self_time (default: self time incl. the kernels an op dispatches), "
                        "self_cpu_time_total, cpu_time_total, self_cpu_memory_usage, cpu_memory_usage, "
                        "device_time_total, self_device_time_total, flops, calls")
    p.add_argument("--active", type=int, default=3, help="forwards recorded in the trace (default 3)")
    p.add_argument("--gzip", action="store_true", help="write the trace as .pt.trace.json.gz")
    p.add_argument("--with-stack", action="store_true", help="record Python stacks in the trace (bigger)")
    p.add_argument("--with-modules", action="store_true", help="record the module hierarchy in the trace")
    p.add_argument("--retry-disturbed", type=int, default=0, metavar="N",
                   help="re-time up to N more times while the timing is disturbed (another process took the "
                        "CPUs); the least disturbed attempt is kept, every attempt is in samples.csv")
    p.add_argument("--all-rows", action="store_true",
                   help="also list profiler labels and nested kernels, with torch.profiler's own columns")
    p.add_argument("--json", action="store_true", help="print summary.json on stdout (progress goes to stderr)")
    from ..distributed.command import add_options as add_distributed_options

    add_distributed_options(p)  # --nproc-per-node, --backend, --rank-timeout-s
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise HarnessError(f"--top must be 0 or more, got {args.top}")
    if args.active < 1:
        raise HarnessError(f"--active must be at least 1, got {args.active}")
    if args.batch_size is not None and args.batch_size < 1:
        raise HarnessError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.retry_disturbed < 0:
        raise HarnessError(f"--retry-disturbed must be 0 or more, got {args.retry_disturbed}")
    if args.iters is not None and args.iters < 1:
        raise HarnessError(f"--iters must be at least 1, got {args.iters}")
    if args.warmup is not None and args.warmup < 0:
        raise HarnessError(f"--warmup must be at least 0, got {args.warmup}")
    from ..pipeline.profiling import ProfileConfig  # torch is imported only once the arguments are valid
    from ..models import options_from_args
    from ..pipeline.run import run_scenario

    cfg = ProfileConfig(active=args.active, gzip=args.gzip, with_stack=args.with_stack, with_modules=args.with_modules)
    from ..distributed import command as distributed

    if distributed.wanted(args):  # several ranks: launched here, or this process is a torchrun rank
        return distributed.main(args, cfg)
    interactive = sys.stderr.isatty() and not args.json

    def progress(stage: str) -> None:
        if interactive:
            print(f"\r\033[K{stage}…", end="", file=sys.stderr, flush=True)

    run = run_scenario(args.scenario, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                       warmup=args.warmup, iters=args.iters, logdir=args.logdir, tag=args.tag,
                       threads=args.threads, workload=args.workload, workload_options=workload_options(args),
                       model_options=options_from_args(args), retry_disturbed=args.retry_disturbed,
                       profile_config=cfg, progress=progress)
    if interactive:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.json:
        from ..core.fsio import to_json

        sys.stdout.write(to_json(run.summary))
        return 0
    print(render_summary(run.summary))
    from ..pipeline import workloads

    own = workloads.render(run.summary)
    if own:
        print(own)
    if args.top:
        print()
        print(render_top_ops(run.ops, run.summary, top=args.top, sort_by=args.sort_by, all_rows=args.all_rows))
    print()
    print(f"inspect:  tensorboard --logdir {shlex.quote(str(args.logdir))}")
    print(f"          open {shlex.quote(str(run.path))}/report.html   (works offline)")
    return 0


def workload_options(args: argparse.Namespace) -> dict:
    """The workload's own options given on the command line (unset ones are left to the scenario)."""
    names = ("prompt_len", "new_tokens", "optimizer")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
