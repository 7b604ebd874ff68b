"""``python -m harness plan SCENARIO|FILE|SOURCE:NAME --memory-budget 16GiB``: the largest batch that fits.

Searches the batch size with memory forecasts of one iteration on the meta device (nothing is
run; any model size), for the workload, its options, the dtype and the device given, and prints
the largest batch whose forecast peak fits, the split by category at that batch, and how far the
next batch goes over. Without ``--memory-budget`` the budget is the device's memory (CUDA: the
GPU's total memory; CPU: the available RAM). Exit 0 when a batch fits, 1 when not even batch 1
fits, 2 for bad input.
"""
from __future__ import annotations

import argparse
import json

from ..errors import HarnessError

HELP = "python -m harness plan --help"
EXIT_NOTHING_FITS = 1


def add_parser(sub) -> argparse.ArgumentParser:
    from .count import _dtype_arg
    from .options import add_workload_options
    from ..models import add_arguments

    p = sub.add_parser(
        "plan", help="the largest batch that fits a memory budget (forecast on the meta device)",
        description="Search the batch size with memory forecasts on the meta device (nothing runs) and print the "
                    "largest batch whose peak fits the budget, the split by category at that batch and the next "
                    "batch's overflow. Exit codes: 0 a batch fits, 1 not even batch 1 fits, 2 bad input.")
    p.add_argument("scenario", metavar="SCENARIO|FILE|SOURCE:NAME",
                   help="a built-in scenario name, a path to a scenario file, or a model by name: torchvision:NAME, "
                        "timm:NAME, hf:ID_OR_PATH")
    p.add_argument("--memory-budget", default=None, metavar="SIZE",
                   help="bytes the iteration may use: 16GiB, 500MB, 1.5GB or plain bytes (default: the device's "
                        "memory: a CUDA GPU's total, the CPU's available RAM)")
    p.add_argument("--dtype", type=_dtype_arg, default=None, metavar="DTYPE",
                   help="float32, bfloat16 or float16 (default: the scenario's)")
    p.add_argument("--device", default=None,
                   help="the device planned for: cpu or cuda[:N] (default: the scenario's); a CUDA plan rounds "
                        "allocations to 512 bytes and, without --memory-budget, uses that GPU's memory")
    p.add_argument("--max-batch", type=int, default=None, metavar="N", help="largest batch to consider (default 2^20)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for the model and inputs")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    add_workload_options(p, lists=True)
    add_arguments(p)
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from .options import spec_without_logdir
    from ..memory.budget import device_budget, parse_budget

    budget = parse_budget(args.memory_budget) if args.memory_budget is not None else None
    if args.max_batch is not None and args.max_batch < 1:
        raise HarnessError(f"--max-batch must be at least 1, got {args.max_batch} (see `{HELP}`)")
    spec = spec_without_logdir(args, HELP)
    from ..memory.forecast import target_device
    from ..memory.plan import MAX_BATCH, plan_spec
    from ..pipeline import scenario as scenarios

    sc = scenarios.load(spec.target, spec.model_options())
    device = spec.device or sc.device
    if budget is None:
        budget_bytes, source = device_budget(target_device(device) if device == "auto" else str(device))
    else:
        budget_bytes, source = budget, "--memory-budget"
    grid = _grid(args)
    if grid:
        return _grid_main(sc.name, spec.replace(device=device), grid, budget_bytes, source, args)
    plan = plan_spec(spec.replace(device=device), budget_bytes, source, args.max_batch or MAX_BATCH)
    if args.json:
        print(json.dumps({"scenario": sc.name, **plan.to_dict()}, indent=2))
    else:
        print(render(sc.name, plan))
    return 0 if plan.fits is not None else EXIT_NOTHING_FITS


def _grid(args: argparse.Namespace) -> list[dict]:
    """Every combination of the workload-option lists given (``--prompt-lens 128,2048 --new-tokens-list
    16,256``: four), each a dict of workload options; [] without lists."""
    import itertools

    from .options import option_lists

    lists = option_lists(args)
    return [dict(zip(lists, values)) for values in itertools.product(*lists.values())] if lists else []


def _grid_main(name: str, spec, grid: list[dict], budget_bytes: int, source: str, args: argparse.Namespace) -> int:
    """One plan per combination of workload options: a table of the largest batch for each (a generation's
    prompt length x new tokens), exit 0 when any fits."""
    from ..memory.plan import MAX_BATCH, plan_spec

    plans = [(opts, plan_spec(spec.replace(workload_options={**spec.workload_options, **opts}), budget_bytes, source,
                              args.max_batch or MAX_BATCH)) for opts in grid]
    if args.json:
        print(json.dumps({"scenario": name, "grid": [{"workload_options": o, **p.to_dict()} for o, p in plans]},
                         indent=2))
    else:
        print(render_grid(name, plans, budget_bytes, source))
    return 0 if any(p.fits is not None for _, p in plans) else EXIT_NOTHING_FITS


def render_grid(name: str, plans: list, budget_bytes: int, source: str) -> str:
    """The table of a grid plan: each combination's largest batch, its peak, phase and KV cache."""
    from ..core.text import table
    from ..core.units import si

    keys = list(plans[0][0])
    rows = []
    for opts, p in plans:
        f = p.fits
        rows.append([str(opts[k]) for k in keys] + (
            [str(f.batch_size) + ("+" if p.capped else ""), si(f.peak_bytes, "B"), f.at_phase, si(f.kv_cache_bytes, "B")]
            if f is not None else ["0", f"{si(p.over.peak_bytes, 'B')} at batch 1", p.over.at_phase, "—"]))
    head = [k.replace("_", " ") for k in keys] + ["largest batch", "peak", "at", "KV cache"]
    return "\n".join([f"{name}: budget {si(budget_bytes, 'B')} ({budget_bytes:,} B, {source}); the largest batch "
                      "for each combination, forecast on meta", *table(head, rows, right=set(range(len(head) - 2))),
                      "  +: --max-batch reached with the budget not; 0: not even batch 1 fits"])


def render(name: str, plan) -> str:
    """The plan's lines: the budget, the largest batch and its split, the next batch's overflow."""
    from ..core.units import si
    from ..memory.render import forecast_lines

    head = f"{name}: budget {si(plan.budget_bytes, 'B')} ({plan.budget_bytes:,} B, {plan.budget_source})"
    tried = ", ".join(str(b) for b, _ in plan.probes)
    tail = f"searched {len(plan.probes)} batch sizes ({tried}) in {plan.seconds:.1f} s, on meta"
    if plan.fits is None:
        f = plan.over
        return "\n".join([head, f"nothing fits: batch 1 needs {si(f.peak_bytes, 'B')}, "
                                f"{si(f.peak_bytes - plan.budget_bytes, 'B')} over the budget", forecast_lines(f), tail])
    f = plan.fits
    lines = [head, f"largest batch that fits: {f.batch_size} (peak {si(f.peak_bytes, 'B')}, "
                   f"{f.peak_bytes / plan.budget_bytes:.1%} of the budget)", forecast_lines(f, title=f"batch {f.batch_size}")]
    if plan.over is not None:
        o = plan.over
        lines.append(f"batch {o.batch_size} would need {si(o.peak_bytes, 'B')} ({o.peak_bytes:,} B): "
                     f"{si(o.peak_bytes - plan.budget_bytes, 'B')} over the budget, peak in {o.at_phase}")
    else:
        lines.append(f"batch {plan.max_batch} (--max-batch) still fits; the budget was not reached")
    return "\n".join([*lines, tail])
