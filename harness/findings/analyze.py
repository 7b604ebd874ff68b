"""Every family over one run: :func:`find` (a pure function of a :class:`Context`) and :func:`for_run`
(the Context of a finished run: its tables, its peak and the bfloat16 peak of its device, the per-op
overhead measured now, the ``ab`` command that replays it)."""
from __future__ import annotations

import shlex
from typing import Any

from . import attention, channels, compiled, decode, dtype, elementwise, fragments, layout, optimizer, recompute, underfilled
from .context import Context
from .model import Finding, ranked

FAMILY_MODULES = (compiled, elementwise, fragments, channels, dtype, layout, underfilled, decode, optimizer, recompute,
                  attention)


def find(ctx: Context) -> list[Finding]:
    """Every family's findings, ranked by the share of an iteration they could save. A change the run
    already has (a compiled run: no ``compile`` finding) is left out."""
    out: list[Finding] = []
    for family in FAMILY_MODULES:
        out.extend(family.find(ctx))
    compiled = bool(ctx.summary.get("compile"))
    return ranked(f for f in out if not (compiled and (f.ab_side or "").startswith("compile")))


def for_run(run: Any, spec: Any = None) -> tuple[list[Finding], Context]:
    """The findings of a finished :class:`harness.pipeline.run.Run` and the Context they were computed on.
    ``spec``: the run's :class:`RunSpec` (the ``ab`` commands need it; None: no commands)."""
    return find(ctx := context_of(run, spec)), ctx


def context_of(run: Any, spec: Any = None) -> Context:
    import pandas as pd

    from .overhead import dispatch_overhead_s

    s = run.summary
    device = str(s.get("device") or "cpu")
    events = getattr(run.counts, "events", None) if run.counts is not None else None
    channels_last = bool(getattr(spec, "channels_last", False))
    target = str(spec.target) if spec is not None else None
    return Context(summary=dict(s, channels_last=channels_last, target=target), ops=run.ops, ops_by_shape=run.ops_by_shape, modules=run.modules,
                   events=events if events is not None else pd.DataFrame(), peak=run.peak,
                   alternates=_alternates(run), overhead_s=dispatch_overhead_s(device, grad=s.get("workload") == "train"),
                   ab_base=ab_base(spec, s) if spec is not None else None,
                   layout_times=_layout_times(s, events, channels_last), **_batch_times(s, events, spec),
                   attention_times=_attention_times(s, events),
                   kernels=run.kernels if s.get("compile") and run.kernels is not None else pd.DataFrame())


def _batch_times(s: dict, events: Any, spec: Any) -> dict:
    """conv2d/linear shapes timed at the run's batch and FACTOR times it, for an eager forward run
    (:func:`harness.findings.underfilled.measure`), and what searches the largest batch that fits its device
    (:func:`harness.findings.underfilled.largest_batch`, run only when an underfilled finding needs it); {}
    otherwise."""
    from .underfilled import FACTOR, largest_batch, measure

    if s.get("compile") or s.get("workload") not in (None, "forward") or events is None or not len(events):
        return {}
    times = measure(events, FACTOR, str(s.get("dtype") or "float32"), str(s.get("device") or "cpu"))
    return {"batch_times": times, "batch_factor": FACTOR,
            "fit_search": (lambda: largest_batch(spec, str(s.get("device") or "cpu"))) if spec is not None else None}


def _layout_times(s: dict, events: Any, channels_last: bool) -> dict:
    """conv2d shapes timed in both layouts (:func:`harness.findings.layout.measure`) for an inference run in
    contiguous format, eager; {} otherwise."""
    from .layout import measure

    if channels_last or s.get("compile") or s.get("workload") == "train" or events is None or not len(events):
        return {}
    if not events["op"].astype(str).str.contains("conv").any():
        return {}
    return measure(events, str(s.get("dtype") or "float32"), str(s.get("device") or "cpu"))


def _attention_times(s: dict, events: Any) -> dict:
    """Eager attention blocks timed eager and as scaled_dot_product_attention
    (:func:`harness.findings.attention.measure`) for an eager inference run with a softmax; {} otherwise."""
    from .attention import measure

    if s.get("compile") or s.get("workload") == "train" or events is None or not len(events):
        return {}
    if not events["op"].astype(str).str.contains("softmax").any():
        return {}
    return measure(events, str(s.get("dtype") or "float32"), str(s.get("device") or "cpu"))


def _alternates(run: Any) -> dict:
    """The bfloat16 peak of the run's device (a float32 run's dtype finding compares the two)."""
    from ..hardware import peak_for

    s, peak = run.summary, run.peak
    if peak is None or s.get("dtype") != "float32":
        return {}
    try:
        return {"bfloat16": peak_for(str(s.get("device") or "cpu").split(":")[0], "bfloat16",
                                     device_name=s.get("device_name"), threads=s.get("threads"),
                                     cuda_flags=(run.env or {}).get("gpu"))}
    except Exception:  # a device without a bf16 entry: no dtype finding
        return {}


def ab_base(spec: Any, s: dict) -> str:
    """``python -m harness ab T T:{side} --batch-size B --dtype D --device X --threads N ...``: the run's
    resolved configuration, its workload and its options; ``{side}`` is filled by each finding."""
    target = shlex.quote(str(spec.target))
    flags = [f"--batch-size {s.get('batch_size')}", f"--dtype {s.get('dtype')}", f"--device {s.get('device')}"]
    if s.get("threads"):
        flags.append(f"--threads {s['threads']}")
    if spec.channels_last:
        flags.append("--channels-last")
    if spec.workload:
        flags.append(f"--workload {spec.workload}")
    for key, value in dict(spec.workload_options).items():
        flags.append(f"--{key.replace('_', '-')} {shlex.quote(str(value))}")
    for key, value in dict(spec.model).items():
        if value is True:
            flags.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False, {}):
            import json

            text = json.dumps(value) if isinstance(value, dict) else str(value)
            flags.append(f"--{key.replace('_', '-')} {shlex.quote(text)}")
    return f"python -m harness ab {target} {target}:{{side}} " + " ".join(flags)


def context_dict(ctx: Context) -> dict:
    """findings.json's ``context``: what every prediction was computed against."""
    bw, bw_text = ctx.bandwidth(0)
    return {"latency_p50_s": ctx.latency_s, "profiled_time_per_iteration_s": ctx.profiled_s,
            "dispatch_overhead_s": ctx.overhead_s,
            "dispatch_overhead_how": "median of 5 rounds of 200 torch.add calls on 1-element tensors, this process",
            "peak_flop_per_s": getattr(ctx.peak, "flop_per_s", None), "bandwidth_bytes_per_s": bw,
            "bandwidth_source": bw_text, "dtype": ctx.dtype, "batch_size": ctx.summary.get("batch_size"),
            "alternate_peaks": {k: p.flop_per_s for k, p in ctx.alternates.items()}}


def document_for(run: Any, spec: Any = None) -> dict:
    """findings.json's document for a finished run (:func:`harness.findings.model.document`). A family that
    fails leaves ``error`` in the document and the run stands (findings are advice, not measurements)."""
    from .model import document

    try:
        findings, ctx = for_run(run, spec)
        return document(findings, context_dict(ctx))
    except Exception as exc:  # pragma: no cover - a defect of a family; reported, not fatal
        return {**document([], {}), "error": f"{type(exc).__name__}: {exc}"}
