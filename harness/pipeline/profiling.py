"""The profiled pass: torch.profiler around a few labelled forwards.

In: a workload and a prepared model. Out: a :class:`Profile` holding the profiler's
events of the active steps (for the join), its ``key_averages`` tables as DataFrames
(times in seconds, memory in bytes, all per profiled forward), the trace file and the
peak memory seen by the profiler.

Each iteration runs inside ``record_function(workload.label)`` (``model_inference`` for
inference) and each phase inside ``record_function(<phase>)``; the step loop follows a
``schedule(wait, warmup, active)`` so the trace holds ``active`` iterations only.
The trace is written by the profiler itself (``export_chrome_trace``), gzip optional,
under a name the torch-tb-profiler plugin recognises: ``<worker>.<span>.pt.trace.json``.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from .measure import synchronizer
from .spec import ProfileConfig  # noqa: F401 - re-exported (defined with the run spec)
from .workloads import Workload

MODEL_LABEL = "model_inference"
US = 1e-6  # the profiler reports microseconds


@dataclass
class Profile:
    """What the profiled pass produced; tables are per profiled forward."""

    events: Any  # torch.autograd.profiler_util.EventList of the active steps
    steps: int
    device_type: str
    ops_raw: pd.DataFrame  # key_averages(), per name
    ops_by_shape_raw: pd.DataFrame  # key_averages(group_by_input_shape=True)
    trace_tmp: Path | None = None  # staged trace file (renamed when the run dir commits)
    trace_name: str | None = None
    peak_activation_bytes: int | None = None
    label: str = MODEL_LABEL
    phases: tuple[str, ...] = ("forward",)
    device_time_recorded: bool = True  # False on CUDA when no kernel time came back (CUPTI missing)


def trace_file_name(worker: str, span: str, gz: bool) -> str:
    """``<worker>.<span>.pt.trace.json[.gz]``; span must be digits for the plugin's pattern."""
    worker = "".join(c if c.isalnum() or c in "-_" else "_" for c in worker)
    return f"{worker}.{span}.pt.trace.json" + (".gz" if gz else "")


def _is_cpu(e) -> bool:
    """A CPU-side event or average (on CUDA the profiler also lists device-side copies of
    ``record_function`` ranges and every kernel: those are not rows of the op tables)."""
    from torch.autograd import DeviceType

    return getattr(e, "device_type", DeviceType.CPU) == DeviceType.CPU


def _avg_table(averages, steps: int, device_type: str, with_shapes: bool) -> pd.DataFrame:
    """key_averages() as a DataFrame of CPU-side rows: seconds and bytes, per profiled iteration."""
    rows = []
    cuda = device_type == "cuda"
    for a in averages:
        if not _is_cpu(a):
            continue
        row = {"name": a.key}
        if with_shapes:
            row["input_shapes"] = str(a.input_shapes)
        row.update({
            "calls": a.count / steps,
            "cpu_time_total_s": a.cpu_time_total * US / steps,
            "self_cpu_time_total_s": a.self_cpu_time_total * US / steps,
            "cpu_memory_usage_bytes": a.cpu_memory_usage / steps,
            "self_cpu_memory_usage_bytes": a.self_cpu_memory_usage / steps,
        })
        if cuda:
            row["device_time_total_s"] = a.device_time_total * US / steps
            row["self_device_time_total_s"] = a.self_device_time_total * US / steps
            row["device_memory_usage_bytes"] = getattr(a, "device_memory_usage", 0) / steps
            row["self_device_memory_usage_bytes"] = getattr(a, "self_device_memory_usage", 0) / steps
        rows.append(row)
    return pd.DataFrame(rows)


def peak_from_trace(trace: dict, device_type: str, device_index: int = 0, baseline_bytes: int = 0) -> int | None:
    """Peak of the allocator's 'Total Allocated' over the recorded window, for one device.

    On CPU the profiler counts from zero when recording starts, so this is what the
    iterations allocated (activations, workspaces). On CUDA the allocator reports its
    absolute total, weights and inputs included: ``baseline_bytes`` (allocated before
    profiling) is subtracted, and only events of ``device_index`` are read.
    """
    want = 0 if device_type == "cpu" else 1
    peak = None
    for ev in trace.get("traceEvents", []):
        if ev.get("name") != "[memory]":
            continue
        args = ev.get("args", {})
        if args.get("Device Type") != want:
            continue
        if want == 1 and args.get("Device Id", device_index) != device_index:
            continue
        total = args.get("Total Allocated")
        if total is not None and (peak is None or total > peak):
            peak = int(total)
    return None if peak is None else max(peak - baseline_bytes, 0)


_KINETO_NOISE = ("USDT:", "STAGE:", "gpuGetDeviceCount failed", "Memory block of unknown size")


@contextlib.contextmanager
def _quiet_kineto():
    """Hide kineto's C++ chatter (``USDT ... profiler_start``, ``STAGE``, and on a CUDA
    build without a GPU ``ERROR ... gpuGetDeviceCount failed``), which it prints on fd 2
    at every start and stop; any other line written meanwhile is passed on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [ln for ln in sink.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(n in ln for n in _KINETO_NOISE)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _exporter(staged_trace: Path | None, gz: bool, exported: dict):
    """The profiler's on_trace_ready: export the Chrome trace to the staged name (fsynced)."""
    def on_ready(prof) -> None:
        if staged_trace is None:
            return
        raw = staged_trace.with_name(staged_trace.name + ".json")
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as f:
            data = f.read()
        exported["trace"] = json.loads(data)
        if gz:
            with open(staged_trace, "wb") as f:
                f.write(gzip.compress(data, compresslevel=6))
            os.unlink(raw)
        else:
            shutil.move(raw, staged_trace)
        with open(staged_trace, "rb") as f:
            os.fsync(f.fileno())

    return on_ready


def run_profiler(
    workload: Workload,
    prep: Any,
    *,
    config: ProfileConfig,
    staged_trace: Path | None,
    trace_name: str | None = None,
) -> Profile:
    """Profile ``config.active`` iterations. The caller enters ``workload.grad_mode()``.

    When ``staged_trace`` is given the Chrome trace is written there (temporary name);
    the caller renames it to :attr:`Profile.trace_name` when the run directory is complete.
    """
    device = prep.device
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync = synchronizer(device)
    exported: dict[str, Any] = {}
    baseline = torch.cuda.memory_allocated(device) if cuda else 0
    with _quiet_kineto(), profile(
        activities=activities,
        schedule=schedule(wait=config.wait, warmup=config.warmup, active=config.active, repeat=1),
        on_trace_ready=_exporter(staged_trace, config.gzip, exported),
        record_shapes=config.record_shapes,
        profile_memory=config.profile_memory,
        with_stack=config.with_stack,
        with_modules=config.with_modules,
    ) as prof:
        for _ in range(config.wait + config.warmup + config.active):
            with record_function(workload.label):
                workload.iteration(prep, record_function)
            if cuda:
                with record_function("harness::synchronize"):
                    sync()
            prof.step()
    return _collect(prof, workload, device, staged_trace, trace_name, exported, baseline)


def _collect(prof, workload: Workload, device: torch.device, staged_trace, trace_name, exported: dict,
             baseline: int) -> Profile:
    from ..core.devices import cuda_index

    index = cuda_index(device)
    peak = (peak_from_trace(exported["trace"], device.type, index, baseline) if "trace" in exported else None)
    return from_events(prof.events(), workload.label, tuple(workload.phases), device.type, staged_trace=staged_trace,
                       trace_name=trace_name, peak_activation_bytes=peak)


def from_events(events, label: str, phases: tuple[str, ...], device_type: str, *, staged_trace: Path | None = None,
                trace_name: str | None = None, peak_activation_bytes: int | None = None) -> Profile:
    """A :class:`Profile` from the profiler's events (an ``EventList`` with its tree built)."""
    # CPU-side labels only: on CUDA each record_function range also appears as a device-side copy
    steps = max(sum(1 for e in events if e.name == label and _is_cpu(e)), 1)
    recorded = device_type != "cuda" or any(e.device_time_total > 0 for e in events if _is_cpu(e))
    return Profile(
        events=events,
        steps=steps,
        device_type=device_type if recorded else "cpu",
        ops_raw=_avg_table(events.key_averages(), steps, device_type, with_shapes=False),
        ops_by_shape_raw=_avg_table(events.key_averages(group_by_input_shapes=True), steps, device_type, with_shapes=True),
        trace_tmp=staged_trace,
        trace_name=trace_name if staged_trace is not None else None,
        peak_activation_bytes=peak_activation_bytes,
        label=label,
        phases=phases,
        device_time_recorded=recorded,
    )
