"""Assemble a run's figures into the summary (:class:`harness.core.schema.Summary`) and tables.

Pure computation: nothing here writes a file, so ``profile(..., logdir=None)`` returns the
same values as a written run.
"""
from __future__ import annotations

import functools
import math
import resource
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from ..core import schema
from ..core.samples import rate, ratio, sample_stats
from ..core.text import utc_iso
from ..core.units import si
from ..version import __version__
from .compiled import warnings as compile_warnings
from .measure import Timing
from .prepare import Prepared, dtype_name
from .workloads import no_scope

ROOT_PATH = "(model)"  # modules.csv's whole-model row (an empty path reads back as NaN in pandas)

OPS_COLUMNS_FIRST = ["name", "phase", "kind", "calls", "dispatch_calls", "self_time_s", "time_share", "macs", "flops", "other_flops",
                     "total_flops", "bytes", "achieved_flop_per_s", "achieved_total_flop_per_s", "achieved_bytes_per_s",
                     "arithmetic_intensity", "peak_flop_per_s", "peak_bytes_per_s", "utilization",
                     "bandwidth_utilization", "memory_level", "level_bandwidth_utilization", "bound", "counted",
                     "cache_resident"]


@dataclass
class Parts:
    """Everything the stages produced for one run, before assembling."""

    prep: Prepared
    workload: Any
    scenario: str
    run_id: str
    started: Any
    tag: str | None
    warmup: int
    iters: int
    config: Any  # ProfileConfig
    timing: Timing
    counts: Any
    prof: Any
    joined: Any
    peak: Any
    env: dict
    attempts: list = field(default_factory=list)  # every timed attempt: (Timing, contention figures)
    kept: int = 0  # the attempt the headline uses (the least disturbed)
    profiled_contention: dict | None = None
    finished_at: str | None = None
    path: str | None = None  # the run directory it will be renamed to (None without a logdir)
    model_options: dict = field(default_factory=dict)
    compile: dict | None = None  # the compile record (harness.pipeline.compiled), None for an eager run
    memory: Any = None  # harness.memory.measured.Measured, or why it is missing (str); None: not measured

    @functools.cached_property
    def phases(self) -> dict[str, dict]:
        """:func:`phase_summaries`, computed once (the summary and a workload's own keys share it)."""
        return phase_summaries(self)


def ordered(df: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    cols = [c for c in first if c in df.columns] + [c for c in df.columns if c not in first]
    return df[cols]


def weights_bytes(model: torch.nn.Module) -> int:
    """Parameters and buffers, each once (:func:`harness.core.tensors.distinct_bytes`)."""
    from ..core.tensors import distinct_bytes

    return distinct_bytes(model)


def phase_summaries(p: Parts) -> dict[str, dict]:
    """Per phase: un-profiled time, counted work per occurrence, achieved rates."""
    by_phase = getattr(p.counts, "by_phase", None)
    out = {}
    for name in p.workload.phases:
        samples = p.timing.phase_samples(name)
        stats = sample_stats(samples)
        if by_phase is not None and len(by_phase):
            row = by_phase[by_phase.phase == name].sum(numeric_only=True)
            occurrences = max(len(samples) / max(len(p.timing.samples_s), 1), 1)
            work: dict[str, float] = {k: int(row.get(k, 0)) for k in ("macs", "flops", "other_flops", "bytes")}
            work = {k: v / occurrences for k, v in work.items()}
        else:  # a one-phase workload: the whole count
            work = {"macs": p.counts.macs, "flops": p.counts.flops, "other_flops": p.counts.other_flops,
                    "bytes": p.counts.bytes}
        t = stats["p50"] if samples else None
        flop_rate = rate(work["flops"], t)
        out[name] = {"time_s": stats, **{k: int(v) if float(v).is_integer() else v for k, v in work.items()},
                     "achieved_flop_per_s": flop_rate, "achieved_bytes_per_s": rate(work["bytes"], t),
                     # FLOP/s utilization is about multiply-add work: none (None) where there is none
                     "utilization": ratio(flop_rate, p.peak.flop_per_s) if work["flops"] else None,
                     "bandwidth_utilization": ratio(rate(work["bytes"], t), p.peak.bytes_per_s)}
    return out


def memory_figures(p: Parts) -> dict:
    """Peak memory: CUDA from the allocator over one iteration; CPU as weights + inputs + activations."""
    from ..core.calls import tensor_bytes

    wb = weights_bytes(p.prep.model)
    act = p.prof.peak_activation_bytes
    if p.prep.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(p.prep.device)
        with p.workload.grad_mode():
            p.workload.iteration(p.prep, no_scope)
        torch.cuda.synchronize(p.prep.device)
        peak_mem = int(torch.cuda.max_memory_allocated(p.prep.device))
    else:
        peak_mem = wb + tensor_bytes(p.prep.call) + (act or 0)
    return {"peak_memory_bytes": peak_mem, "peak_activation_bytes": act, "weights_bytes": wb,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def peak_exceeded(summary: dict, ops: pd.DataFrame, modules: pd.DataFrame, peak: Any) -> list[dict]:
    """Every place whose achieved FLOP/s is above its ceiling: a defect of the ceiling, reported."""
    ceiling = peak.flop_per_s
    if not ceiling:
        return []
    out = []
    if (summary.get("achieved_flop_per_s") or 0) > ceiling:
        out.append({"what": "run", "name": summary["scenario"], "achieved_flop_per_s": summary["achieved_flop_per_s"],
                    "ceiling_flop_per_s": ceiling, "source": peak.source})
    for what, df, col in (("op", ops[ops.kind == "op"], "name"), ("module", modules, "path")):
        over = df[df["achieved_flop_per_s"].fillna(0) > df["peak_flop_per_s"].fillna(math.inf)]
        for _, r in over.iterrows():
            out.append({"what": what, "name": str(r[col]), "achieved_flop_per_s": float(r["achieved_flop_per_s"]),
                        "ceiling_flop_per_s": float(r["peak_flop_per_s"]), "source": peak.source})
    return out


def _keys(p: Parts) -> dict:
    ck = schema.config_key(p.scenario, p.prep.batch_size, dtype_name(p.prep.dtype), p.prep.device.type,
                           p.prep.threads, p.tag, {**p.prep.config_extra, **p.workload.config_extra()})
    return {"config_key": ck, "env_key": schema.env_key(torch.__version__, p.env["device_name"], p.env["git_commit"])}


def _work_and_rates(p: Parts, lat: dict) -> dict:
    c, p50 = p.counts, lat["p50"]
    flops, total = int(c.flops), c.flops + c.other_flops
    achieved = rate(flops, p50)
    return {
        "params": int(c.params), "trainable_params": int(c.trainable_params), "buffers": int(c.buffers),
        "macs": int(c.macs), "flops": flops, "other_flops": int(c.other_flops), "bytes": int(c.bytes),
        "latency_s": lat,
        "throughput_samples_per_s": rate(p.workload.items_per_iteration(p.prep), p50),
        "achieved_flop_per_s": achieved,
        "peak_flop_per_s": p.peak.flop_per_s, "peak_source": p.peak.source, "peak_note": p.peak.note,
        "utilization": ratio(achieved, p.peak.flop_per_s),
        "mem_bandwidth_bytes_per_s": p.peak.bytes_per_s,
        "achieved_bytes_per_s": rate(c.bytes, p50),
        "arithmetic_intensity": ratio(total, c.bytes),
    }


def _profiled(p: Parts) -> dict:
    cuda = p.prep.device.type == "cuda"
    source = "cuda" if cuda and p.prof.device_time_recorded else "cpu"
    if cuda and not p.prof.device_time_recorded:
        source = "cpu (no device time was recorded: CUPTI unavailable?)"
    per_iter, op_per_iter = p.joined.time_per_forward_s, p.joined.op_time_per_forward_s
    return {"steps": p.prof.steps, "wait": p.config.wait, "warmup": p.config.warmup, "active": p.config.active,
            "time_per_iteration_s": per_iter, "op_time_per_iteration_s": op_per_iter,
            # the schema-2 names, readable for one more schema version
            "time_per_forward_s": per_iter, "op_time_per_forward_s": op_per_iter,
            "time_source": source}


def summary(p: Parts, trace_bytes: int | None) -> dict:
    """The generic keys of the summary (schema in :mod:`harness.core.schema`)."""
    lat = sample_stats(p.timing.samples_s)
    s: dict = {
        "schema_version": schema.SUMMARY_SCHEMA_VERSION, "scenario": p.scenario, "run_id": p.run_id,
        "started_at": utc_iso(p.started), "finished_at": p.finished_at, "tag": p.tag,
        "model_options": dict(p.model_options),
        "workload": p.workload.name, "phase_names": list(p.workload.phases),
        "device": p.prep.device.type, "device_name": p.env["device_name"], "dtype": dtype_name(p.prep.dtype),
        "batch_size": p.prep.batch_size, "threads": p.prep.threads, "warmup": p.warmup, "iters": p.iters,
        **_work_and_rates(p, lat), **memory_figures(p),
        "coverage": p.joined.coverage, "profiled": _profiled(p), "phases": p.phases,
        "contention": contention(p),
        "trace_files": [p.prof.trace_name] if p.prof.trace_name else [], "trace_bytes": trace_bytes,
        "torch_version": torch.__version__, "harness_version": __version__, "git_commit": p.env["git_commit"],
        **_keys(p), "path": p.path,
    }
    if p.compile is not None:
        s["compile"] = {**p.compile, **({"fusion": p.joined.fusion} if p.joined.fusion else {})}
    if hasattr(p.memory, "summary"):
        s["memory"] = p.memory.summary()
    return s


def _merge_memory(base: dict, own: dict) -> dict:
    """A workload's own ``memory`` keys (a train run's split) added beside the measured ones (new keys only)."""
    if "memory" not in base or "memory" not in own:
        return own
    clash = sorted(set(own["memory"]) & set(base["memory"]))
    if clash:
        raise RuntimeError(f"a workload would replace the generic summary key memory.{clash[0]}")
    return {**own, "memory": {**base["memory"], **own["memory"]}}


def _phases(p: Parts) -> dict[str, dict]:
    """``phases`` with the workload's own phase keys added (new keys only)."""
    extra = p.workload.phase_extra(p)
    out = {}
    for name, ph in p.phases.items():
        own = extra.get(name, {})
        clash = sorted(set(own) & set(ph))
        if clash:
            raise RuntimeError(f"workload {p.workload.name} would replace phases.{name}.{clash[0]}")
        out[name] = {**ph, **own}
    return out


def record(p: Parts, trace_bytes: int | None, ops: pd.DataFrame, modules: pd.DataFrame) -> schema.Summary:
    """The run record, built once: the generic keys, the workload's own keys (which may not replace
    a generic one), then what is judged from all of them (ceilings exceeded, warnings)."""
    base = summary(p, trace_bytes)
    own = p.workload.summary_extra(p)
    own = _merge_memory(base, own)
    clash = sorted(set(own) & set(base) - {"memory"})
    if clash:
        raise RuntimeError(f"workload {p.workload.name} would replace the generic summary key {clash[0]!r}")
    peak_fields = {k: v for k, v in p.peak.summary_fields().items() if k not in base and k not in own}
    s = {**base, **own, **peak_fields, "phases": _phases(p), "calibrate_hint": p.peak.calibrate_hint()}
    exceeded = peak_exceeded(s, ops, modules, p.peak)
    judged = {**s, "peak_exceeded": exceeded}
    return {**judged, "warnings": warnings(p, judged)}  # type: ignore[return-value]


def tables(p: Parts) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ops, ops_by_shape and modules in their documented column order, root row named :data:`ROOT_PATH`."""
    def finish(df: pd.DataFrame, first: list[str]) -> pd.DataFrame:
        df = df.copy()
        df["cache_resident"] = df["bandwidth_utilization"].fillna(0) > 1.0
        return ordered(df, first)

    ops = finish(p.joined.ops, OPS_COLUMNS_FIRST)
    by_shape = finish(p.joined.ops_by_shape, OPS_COLUMNS_FIRST[:1] + ["input_shapes"] + OPS_COLUMNS_FIRST[1:])
    modules = p.joined.modules.copy()
    modules["path"] = modules["path"].replace("", ROOT_PATH)
    return ops, by_shape, ordered(modules, ["path", "phase"])


def samples_frame(p: Parts) -> pd.DataFrame:
    """samples.csv: every timed iteration of every attempt; ``kept`` marks the attempt the headline uses."""
    attempts = p.attempts or [(p.timing, {})]
    frames = [pd.DataFrame({"iteration": range(len(t.samples_s)), "latency_s": t.samples_s, "attempt": i,
                            "kept": i == p.kept}) for i, (t, _) in enumerate(attempts)]
    return pd.concat(frames, ignore_index=True)


def contention(p: Parts) -> dict | None:
    """summary.json's ``contention``: the kept attempt's figures and verdict, how many attempts
    were timed, and the profiled pass's own figures (``profiled_pass``)."""
    if not p.attempts:
        return None
    return {**p.attempts[p.kept][1], "attempts": len(p.attempts), "kept_attempt": p.kept,
            "profiled_pass": p.profiled_contention}


def warnings(p: Parts, summary: dict) -> list[str]:
    """One line each for what makes this run's figures less than they look."""
    out = compile_warnings(p.compile)
    if isinstance(p.memory, str):
        out.append(f"memory by category was not measured ({p.memory})")
    if p.prep.device.type == "cuda" and not p.prof.device_time_recorded:
        out.append("no device time was recorded (is CUPTI available?): per-op times are CPU times")
    if p.prep.device.type == "cuda" and p.warmup == 0:
        out.append("--warmup 0 on CUDA: the first samples include lazy initialization (cuDNN autotuning, allocator)")
    prof = (summary.get("contention") or {}).get("profiled_pass") or {}
    if prof.get("disturbed"):
        out.append(f"the profiled pass was disturbed ({prof.get('reason')}): per-op times are not comparable")
    for x in summary.get("peak_exceeded", [])[:3]:
        out.append(f"{x['what']} {x['name']}: achieved {si(x['achieved_flop_per_s'], 'FLOP/s')} is above the "
                   f"{x['source']} ceiling {si(x['ceiling_flop_per_s'], 'FLOP/s')}: the ceiling is wrong, not the result")
    return out
