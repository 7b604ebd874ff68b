"""``python -m harness count SCENARIO|FILE``: parameters, MACs, FLOPs and bytes of one forward pass.

Counts what PyTorch actually runs (fused kernels included) in eval mode, in the
scenario's dtype or ``--dtype``, without timing anything.  ``--device meta`` counts
without running the math or holding the weights (any model size).  Prints a table
with SI units, or JSON with ``--json``.
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
    p.add_argument("scenario", metavar="SCENARIO|FILE", help="a built-in scenario name or a path to a scenario file")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="batch size (default: the scenario's)")
    p.add_argument("--dtype", type=_dtype_arg, default=None, metavar="DTYPE",
                   help="float32, bfloat16 or float16 (also fp32, bf16, fp16, half; default: the scenario's)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument("--by", choices=["module", "op"], default="module", help="table rows: modules (default) or ops")
    p.add_argument("--depth", type=int, default=None, metavar="N", help="module table: show modules up to this depth")
    p.add_argument("--device", default=None,
                   help="device to count on (default: the scenario's); 'meta' counts without compute or memory")
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

    if args.batch_size is not None and args.batch_size < 1:
        raise HarnessError(f"--batch-size must be a positive integer, got {args.batch_size} (see `{HELP}`)")
    if args.depth is not None and args.depth < 0:
        raise HarnessError(f"--depth must be 0 or more, got {args.depth} (see `{HELP}`)")
    sc = scenarios.load(args.scenario)
    batch = args.batch_size or sc.batch_size
    dtype = args.dtype or canonical(sc.dtype)
    if dtype not in RUN_DTYPES:
        raise HarnessError(f"scenario '{sc.name}' asks for dtype {sc.dtype!r}; pass --dtype "
                           f"{', '.join(RUN_DTYPES)} (see `{HELP}`)")
    counts = _count(sc, batch, dtype, args.device or sc.device)
    if args.json:
        out = {"scenario": sc.name, "batch_size": batch, "dtype": dtype, **counts.to_dict()}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{sc.name}: batch {batch}, {dtype}, eval, counted on {counts.device}")
    print(counts.table(by=args.by, depth=args.depth))
    return 0


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
