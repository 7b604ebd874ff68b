"""``python -m harness count SCENARIO|FILE``: parameters, MACs, FLOPs and bytes of one iteration.

Counts what PyTorch actually runs (fused kernels included) for one iteration of the
workload (``--workload``, else the scenario's: a forward in eval mode, a whole generation,
a training step), in the scenario's dtype or ``--dtype``, without timing anything.
``--device meta`` counts without running the math or holding the weights (any model size;
a generation reads token values, so it is counted on a real device). Prints a table with SI
units and, for several phases, the work of each; or JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import json

from ..core.dtypes import RUN_DTYPES, canonical
from ..core.text import short_exc
from ..errors import HarnessError

HELP = "python -m harness count --help"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "count",
        help="count params, MACs, FLOPs and bytes of a scenario's forward pass",
        description="Count parameters, MACs, FLOPs (2 x MACs), other FLOPs and bytes of one forward pass "
                    "of a scenario, as PyTorch actually runs it (fused kernels included), by module or by op.",
    )
    p.add_argument("scenario", metavar="SCENARIO|FILE|SOURCE:NAME",
                   help="a built-in scenario name, a path to a scenario file, or a model by name: torchvision:NAME, "
                        "timm:NAME, hf:ID_OR_PATH")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="batch size (default: the scenario's)")
    p.add_argument("--dtype", type=_dtype_arg, default=None, metavar="DTYPE",
                   help="float32, bfloat16 or float16 (also fp32, bf16, fp16, half; default: the scenario's)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument("--by", choices=["module", "op"], default="module", help="table rows: modules (default) or ops")
    p.add_argument("--depth", type=int, default=None, metavar="N", help="module table: show modules up to this depth")
    p.add_argument("--device", default=None,
                   help="device to count on (default: the scenario's); 'meta' counts without compute or memory")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for the model and inputs")
    p.add_argument("--memory", action="store_true",
                   help="also forecast the iteration's memory on the meta device: peak, its phase, the split by "
                        "category (parameters, gradients, optimizer state, activations, KV cache, ...) and the top "
                        "modules (README 'Memory: forecast and plan')")
    from .options import add_workload_options
    from ..models import add_arguments

    add_workload_options(p)
    add_arguments(p)
    p.set_defaults(func=main)
    return p


def _dtype_arg(text: str) -> str:
    """``--dtype``: a run dtype's canonical name (argparse reports a bad one with `count --help`)."""
    name = canonical(text)
    if name not in RUN_DTYPES:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; use one of {', '.join(RUN_DTYPES)}")
    return name


def main(args: argparse.Namespace) -> int:
    from ..pipeline import scenario as scenarios
    from ..pipeline import workloads
    from .options import spec_without_logdir

    if args.depth is not None and args.depth < 0:
        raise HarnessError(f"--depth must be 0 or more, got {args.depth} (see `{HELP}`)")
    spec = spec_without_logdir(args, HELP)
    sc = scenarios.load(spec.target, spec.model_options())
    wl = workloads.get(spec.workload or sc.workload, **spec.workload_options)
    batch = spec.batch_size or sc.batch_size
    dtype = spec.dtype or canonical(sc.dtype)
    if dtype not in RUN_DTYPES:
        raise HarnessError(f"scenario '{sc.name}' asks for dtype {sc.dtype!r}; pass --dtype "
                           f"{', '.join(RUN_DTYPES)} (see `{HELP}`)")
    device = args.device or sc.device
    counts = _count(sc, batch, dtype, device) if wl.name == "forward" and not spec.channels_last \
        else _count_workload(sc, wl, spec.replace(batch_size=batch, dtype=dtype, device=device))
    memory = _forecast(spec.replace(batch_size=batch, dtype=dtype, device=device), sc) if args.memory else None
    if args.json:
        out = {"scenario": sc.name, "workload": wl.name, "batch_size": batch, "dtype": dtype, **counts.to_dict()}
        if memory is not None:
            out["memory"] = memory.to_dict()
        print(json.dumps(out, indent=2))
        return 0
    mode = {"forward": "eval"}.get(wl.name, wl.word)
    print(f"{sc.name}: batch {batch}, {dtype}, {mode}, one {wl.word}, counted on {counts.device}")
    print(counts.table(by=args.by, depth=args.depth))
    if len(counts.by_phase) > 1:
        print()
        print(_phase_lines(counts))
    if memory is not None:
        from ..memory.render import forecast_lines

        print()
        print(forecast_lines(memory))
    return 0


def _forecast(spec, sc):
    """``--memory``: the iteration's memory forecast on meta (:func:`harness.memory.forecast.forecast_spec`)."""
    from ..memory.forecast import forecast_spec

    return forecast_spec(spec.replace(device=None if spec.device == "meta" else spec.device), scenario=sc)


def _phase_lines(counts) -> str:
    """One line per phase: its MACs, FLOPs, other FLOPs and bytes."""
    from ..core.units import si

    lines = ["by phase:"]
    for r in counts.by_phase.itertuples(index=False):
        lines.append(f"  {r.phase:<10} {si(r.macs, 'MAC'):>12}  {si(r.flops, 'FLOP'):>12}  "
                     f"{si(r.other_flops, 'FLOP'):>12} other  {si(r.bytes, 'B'):>10} moved")
    return "\n".join(lines)


def _count_workload(sc, wl, spec):
    """One iteration of a workload other than a plain forward: the run's own counting code
    (:meth:`harness.pipeline.workloads.Workload.count`) on the prepared scenario; a training
    step on meta goes through :func:`harness.count.count` (``train=True``)."""
    import torch

    from ..count import count

    if str(spec.device) == "meta":
        if wl.name != "train":
            raise HarnessError(f"--workload {wl.name} cannot be counted on the meta device (it reads tensor values); "
                               f"count on cpu (see `{HELP}`)")
        from ..pipeline import scenario as scenarios
        from ..pipeline.prepare import cast_inputs

        with torch.device("meta"):
            model = scenarios.build(sc).to(getattr(torch, spec.dtype))
        inputs = cast_inputs(scenarios.inputs(sc, spec.batch_size, torch.device("cpu")), torch.device("cpu"),
                             getattr(torch, spec.dtype))
        mod = sc.module
        return count(model, inputs, device="meta", train=True, optimizer=wl.option("optimizer", None, None),
                     loss_fn=getattr(mod, "loss_fn", None),
                     targets=mod.make_targets(spec.batch_size, torch.device("cpu")) if callable(
                         getattr(mod, "make_targets", None)) else None)
    from ..pipeline.run import build

    _, wl, prep = build(spec)
    try:
        wl.setup(prep)
        with wl.grad_mode():
            return wl.count(prep)
    except HarnessError:
        raise
    except Exception as exc:
        raise HarnessError(f"scenario '{sc.name}' raised during the counted {wl.word}: {short_exc(exc)}") from exc
    finally:
        wl.teardown(prep)
        prep.restore()


def _count(sc, batch: int, dtype: str, device: str):
    """Build the scenario on ``device`` (meta: no weights materialized) in ``dtype`` and count one forward."""
    import torch

    from ..count import count
    from ..pipeline import scenario as scenarios
    from ..pipeline.prepare import cast_inputs

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise HarnessError(f"--device {device!r} is not a torch device ({short_exc(exc)}); see `{HELP}`") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"device {device!r} is not available here; use --device cpu or --device meta")
    dt = getattr(torch, dtype)
    if dev.type == "meta":
        with torch.device("meta"):  # no weights are materialized
            model = scenarios.build(sc)
    else:
        model = scenarios.build(sc).to(dev)
    in_dev = torch.device("cpu") if dev.type == "meta" else dev
    inputs = scenarios.inputs(sc, batch, in_dev)
    if dt != torch.float32:  # models are built in float32; other parts (float64 buffers) are left alone then
        model = model.to(dt)
        inputs = cast_inputs(inputs, in_dev, dt)
    model.eval()
    try:
        return count(model, inputs, device="meta" if dev.type == "meta" else None)
    except HarnessError:
        raise
    except Exception as exc:
        raise HarnessError(f"scenario '{sc.name}' raised during the counted forward pass: {short_exc(exc)}") from exc
