"""``python -m harness count SCENARIO|FILE``: parameters, MACs, FLOPs and bytes of one forward pass.

Counts what PyTorch actually runs (fused kernels included) in eval mode, without
timing anything.  ``--device meta`` counts without running the math or holding the
weights (any model size).  Prints a table with SI units, or JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import json

from ..errors import HarnessError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "count",
        help="count params, MACs, FLOPs and bytes of a scenario's forward pass",
        description="Count parameters, MACs, FLOPs (2 x MACs), other FLOPs and bytes of one forward pass "
                    "of a scenario, as PyTorch actually runs it (fused kernels included), by module or by op.",
    )
    p.add_argument("scenario", metavar="SCENARIO|FILE", help="a built-in scenario name or a path to a scenario file")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="batch size (default: the scenario's)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.add_argument("--by", choices=["module", "op"], default="module", help="table rows: modules (default) or ops")
    p.add_argument("--depth", type=int, default=None, metavar="N", help="module table: show modules up to this depth")
    p.add_argument("--device", default=None,
                   help="device to count on (default: the scenario's); 'meta' counts without compute or memory")
    p.set_defaults(func=main)
    return p


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(args: argparse.Namespace) -> int:
    import torch

    from ..pipeline import scenario as scenarios
    from ..count import count

    if args.batch_size is not None and args.batch_size < 1:
        raise HarnessError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.depth is not None and args.depth < 0:
        raise HarnessError(f"--depth must be 0 or more, got {args.depth}")
    sc = scenarios.load(args.scenario)
    batch = args.batch_size or sc.batch_size
    device = args.device or sc.device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise HarnessError(f"--device {device!r} is not a torch device ({_short(exc)})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"device {device!r} is not available here; use --device cpu or --device meta")

    if dev.type == "meta":
        with torch.device("meta"):  # no weights are materialized
            model = scenarios.build(sc)
    else:
        model = scenarios.build(sc).to(dev)
    dtype = getattr(torch, sc.dtype, None)
    if isinstance(dtype, torch.dtype) and dtype != torch.float32 and dtype.is_floating_point:
        model = model.to(dtype)
    model.eval()
    inputs = scenarios.inputs(sc, batch, "cpu" if dev.type == "meta" else dev)
    if isinstance(dtype, torch.dtype) and dtype != torch.float32 and dtype.is_floating_point:
        inputs = _cast(inputs, dtype)

    try:
        counts = count(model, inputs, device="meta" if dev.type == "meta" else None)
    except HarnessError:
        raise
    except Exception as exc:
        raise HarnessError(f"scenario '{sc.name}' raised during the counted forward pass: {_short(exc)}") from exc

    if args.json:
        out = {"scenario": sc.name, "batch_size": batch, "dtype": sc.dtype, **counts.to_dict()}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{sc.name}: batch {batch}, {sc.dtype}, eval, counted on {counts.device}")
    print(counts.table(by=args.by, depth=args.depth))
    return 0


def _cast(obj, dtype):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if isinstance(obj, tuple):
        return tuple(_cast(o, dtype) for o in obj)
    if isinstance(obj, list):
        return [_cast(o, dtype) for o in obj]
    if isinstance(obj, dict):
        return {k: _cast(v, dtype) for k, v in obj.items()}
    return obj
