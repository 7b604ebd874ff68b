"""The options every verb that runs a scenario shares, and the one place they become a run spec.

``run``, ``count``, ``ab``, ``sweep`` and the multi-rank launcher call
:func:`add_scenario_options` (what to build and how to drive it: batch, device, dtype,
threads, channels_last, ``--workload`` and **every registered workload's own options**, the
options of models by name); ``run`` and ``sweep`` add :func:`add_timing_options`, ``run``
also :func:`add_profile_options`. :func:`spec_from_args` turns the parsed flags into a
:class:`harness.pipeline.spec.RunSpec`, so an option added to the spec or to a workload
reaches every verb.

Nothing here imports torch or pandas.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..errors import HarnessError
from ..pipeline import workloads
from ..pipeline.spec import COMPILE_MODES, ProfileConfig, RunSpec


def add_scenario_options(p: argparse.ArgumentParser, *, shared: bool = False, sweep: bool = False) -> None:
    """What to build and how to drive it. ``shared``: ``ab``'s wording (the options apply to both sides);
    ``sweep``: batch size, dtype and threads are the sweep's lists, and each sweepable workload option
    also gets its list flag (``--prompt-lens 32,128``)."""
    both = " for both sides (a side's own :key= wins)" if shared else ""
    if not sweep:
        p.add_argument("--batch-size", type=int, default=None,
                       help=f"batch size{both} (default: the scenario's, else 1)")
        p.add_argument("--dtype", default=None, help=f"float32, bfloat16 or float16{both} (default: the scenario's)")
        p.add_argument("--threads", type=int, default=None, help=f"torch intra-op threads{both} (default: torch's)")
    p.add_argument("--device", default=None, help=f"cpu, cuda, cuda:N or auto{both} (default: the scenario's, else cpu)")
    p.add_argument("--channels-last", action="store_true",
                   help=f"channels_last memory format for the model and its 4-d inputs{both}")
    add_compile_options(p, both)
    add_workload_options(p, lists=sweep)
    from ..models import add_arguments as add_model_arguments

    add_model_arguments(p)


def add_compile_options(p: argparse.ArgumentParser, both: str = "") -> None:
    """``--compile [MODE]``, ``--compile-backend``, ``--dynamic/--no-dynamic`` (:mod:`harness.pipeline.compiled`)."""
    g = p.add_argument_group("torch.compile")
    g.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   choices=COMPILE_MODES,
                   help=f"run the model under torch.compile{both} (MODE: {', '.join(COMPILE_MODES)}; default when "
                        "given bare); the compile cost is measured apart")
    g.add_argument("--compile-backend", default=None, metavar="NAME",
                   help="torch.compile backend (default inductor; needs --compile)")
    g.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=None,
                   help="compile with dynamic shapes, or --no-dynamic for static ones (default: dynamo decides)")
    if not both:  # ab compares sides itself: `ab X X:compile`
        g.add_argument("--vs-eager-s", type=float, default=None, metavar="SECONDS",
                       help="seconds a compiled run times itself against its eager model, interleaved, for the "
                            "speedup with its interval (default 5; 0: not timed; needs --compile)")


def add_workload_options(p: argparse.ArgumentParser, lists: bool = False) -> None:
    """``--workload`` and each registered workload's own options (``--prompt-len``, ``--optimizer``...);
    ``lists``: also each option's comma-separated list flag (``--prompt-lens``) for sweeps."""
    g = p.add_argument_group("workload (how the model is driven)")
    g.add_argument("--workload", default=None, metavar="NAME",
                   help=f"{', '.join(workloads.names())} (default: the scenario's `workload`, else forward)")
    for opt in workloads.declared_options().values():
        g.add_argument(opt.flag, dest=opt.name, type=opt.type, default=None, help=opt.help,
                       **({"choices": opt.choices} if opt.choices else {"metavar": "N" if opt.type is int else "X"}))
        if lists and opt.plural_flag:
            g.add_argument(opt.plural_flag, dest=opt.plural, default=None, metavar="A,B,...",
                           help=f"sweep {opt.flag} over these values (comma-separated)")


def add_timing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--warmup", type=int, default=None, help="warm-up iterations before timing (default 5)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations, each synchronized (default 20)")
    p.add_argument("--retry-disturbed", type=int, default=0, metavar="N",
                   help="re-time up to N more times while the timing is disturbed (another process took the "
                        "CPUs); the least disturbed attempt is kept, every attempt is in samples.csv")
    p.add_argument("--logdir", default="logs", help="where runs are written (default: logs)")
    p.add_argument("--tag", default=None, help="a label kept in summary.json and history.csv")


def add_profile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--active", type=int, default=3, help="iterations recorded in the trace (default 3)")
    p.add_argument("--gzip", action="store_true", help="write the trace as .pt.trace.json.gz")
    p.add_argument("--with-stack", action="store_true", help="record Python stacks in the trace (bigger)")
    p.add_argument("--with-modules", action="store_true", help="record the module hierarchy in the trace")


def workload_options(args: argparse.Namespace) -> dict[str, Any]:
    """The workload options given on the command line (unset ones are left to the scenario)."""
    return {n: getattr(args, n) for n in workloads.declared_options() if getattr(args, n, None) is not None}


def option_lists(args: argparse.Namespace) -> dict[str, list]:
    """The sweep lists of workload options given (``--prompt-lens 32,128`` -> ``{"prompt_len": [32, 128]}``),
    each value checked by its option (exit 2 naming the list flag)."""
    from ..tracking.sweep import parse_option_list

    return {opt.name: parse_option_list(getattr(args, opt.plural), opt) for opt in workloads.declared_options().values()
            if opt.plural and getattr(args, opt.plural, None) is not None}


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The named-model options as a dict ({} when all are defaults); bad values exit 2."""
    from ..models import ModelOptions, options_from_args

    opts = dataclasses.asdict(options_from_args(args))
    return {} if opts == dataclasses.asdict(ModelOptions()) else opts


def spec_from_args(args: argparse.Namespace, **overrides: Any) -> RunSpec:
    """The run spec of parsed flags (flags a verb does not have keep the spec's defaults; a verb without a
    ``scenario`` argument passes ``target``)."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    profile = ProfileConfig(active=get("active", 3), gzip=bool(get("gzip")), with_stack=bool(get("with_stack")),
                            with_modules=bool(get("with_modules")))
    fields: dict[str, Any] = dict(
        target=str(get("scenario", "") or ""), workload=get("workload"), workload_options=workload_options(args),
        model=model_options(args), batch_size=get("batch_size"), device=get("device"), dtype=get("dtype"),
        threads=get("threads"), channels_last=bool(get("channels_last")), compile=get("compile"),
        compile_backend=get("compile_backend"), dynamic=get("dynamic"), vs_eager_s=get("vs_eager_s"), warmup=get("warmup"), iters=get("iters"),
        retry_disturbed=get("retry_disturbed", 0) or 0, profile=profile, logdir=get("logdir", "logs"),
        tag=get("tag"))
    fields.update(overrides)
    spec = RunSpec(**fields)
    if spec.workload is not None:  # the workload and its options are checked before torch is imported
        workloads.get(spec.workload, **spec.workload_options)
    elif spec.workload_options:
        _check_options_exist(spec.workload_options)
    return spec


def spec_without_logdir(args: argparse.Namespace, help_command: str) -> RunSpec:
    """:func:`spec_from_args` for a verb that writes no run directory (``count``, ``plan``); a bad flag's
    message ends with ``(see `help_command`)``."""
    try:
        return spec_from_args(args, logdir=None)
    except HarnessError as exc:
        raise HarnessError(f"{exc.message} (see `{help_command}`)") from None


def _check_options_exist(options: dict[str, Any]) -> None:
    """Without --workload the scenario decides; each option must at least belong to some workload."""
    declared = workloads.declared_options()
    for name, value in options.items():
        declared[name].parse(value)
