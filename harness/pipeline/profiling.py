"""The profiled pass: torch.profiler around a few labelled forwards.

In: a prepared model and inputs. Out: a :class:`Profile` holding the profiler's
events of the active steps (for the join), its ``key_averages`` tables as DataFrames
(times in seconds, memory in bytes, all per profiled forward), the trace file and the
peak memory seen by the profiler.

Each forward runs inside ``record_function("model_inference")``; the step loop follows
a ``schedule(wait, warmup, active)`` so the trace holds ``active`` forwards only.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from .measure import call_model, synchronizer

MODEL_LABEL = "model_inference"
US = 1e-6  # the profiler reports microseconds


@dataclass
class ProfileConfig:
    """Profiler options. ``active`` forwards are recorded after ``wait`` + ``warmup`` steps."""

    wait: int = 1
    warmup: int = 1
    active: int = 3
    record_shapes: bool = True
    profile_memory: bool = True
    with_stack: bool = False
    with_modules: bool = False
    gzip: bool = False


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
    extra: dict = field(default_factory=dict)


def trace_file_name(worker: str, span: str, gz: bool) -> str:
    """``<worker>.<span>.pt.trace.json[.gz]``; span must be digits for the plugin's pattern."""
    worker = "".join(c if c.isalnum() or c in "-_" else "_" for c in worker)
    return f"{worker}.{span}.pt.trace.json" + (".gz" if gz else "")


def _avg_table(averages, steps: int, device_type: str, with_shapes: bool) -> pd.DataFrame:
    """key_averages() as a DataFrame: seconds and bytes, divided by the number of forwards."""
    rows = []
    cuda = device_type == "cuda"
    for a in averages:
        row = {
            "name": a.key,
            "calls": a.count / steps,
            "cpu_time_total_s": a.cpu_time_total * US / steps,
            "self_cpu_time_total_s": a.self_cpu_time_total * US / steps,
            "cpu_memory_usage_bytes": a.cpu_memory_usage / steps,
            "self_cpu_memory_usage_bytes": a.self_cpu_memory_usage / steps,
        }
        if with_shapes:
            row = {"name": a.key, "input_shapes": str(a.input_shapes), **{k: v for k, v in row.items() if k != "name"}}
        if cuda:
            row["device_time_total_s"] = a.device_time_total * US / steps
            row["self_device_time_total_s"] = a.self_device_time_total * US / steps
            row["device_memory_usage_bytes"] = getattr(a, "device_memory_usage", 0) / steps
            row["self_device_memory_usage_bytes"] = getattr(a, "self_device_memory_usage", 0) / steps
        rows.append(row)
    return pd.DataFrame(rows)


def _peak_from_trace(trace: dict, device_type: str) -> int | None:
    """Peak of the allocator's 'Total Allocated' over the recorded window, for the device.

    The profiler starts counting at zero when recording starts, so on CPU this is the
    memory the forwards allocated (activations, workspaces), not the weights.
    """
    want = 0 if device_type == "cpu" else 1
    peak = None
    for ev in trace.get("traceEvents", []):
        if ev.get("name") != "[memory]":
            continue
        args = ev.get("args", {})
        if args.get("Device Type") != want:
            continue
        total = args.get("Total Allocated")
        if total is not None and (peak is None or total > peak):
            peak = int(total)
    return peak


_KINETO_NOISE = ("USDT:", "STAGE:", "gpuGetDeviceCount failed")


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


def run_profiler(
    model: torch.nn.Module,
    inputs: Any,
    *,
    device: torch.device,
    config: ProfileConfig,
    staged_trace: Path | None,
    trace_name: str | None = None,
) -> Profile:
    """Profile ``config.active`` forwards. The caller sets eval mode and inference mode.

    When ``staged_trace`` is given the Chrome trace is written there (temporary name);
    the caller renames it to :attr:`Profile.trace_name` when the run directory is complete.
    """
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync = synchronizer(device)
    exported: dict[str, Any] = {}

    def on_ready(prof) -> None:
        if staged_trace is None:
            return
        raw = staged_trace.with_name(staged_trace.name + ".json")
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as f:
            data = f.read()
        exported["trace"] = json.loads(data)
        if config.gzip:
            with open(staged_trace, "wb") as f:
                f.write(gzip.compress(data, compresslevel=6))
            os.unlink(raw)
        else:
            shutil.move(raw, staged_trace)
        with open(staged_trace, "rb") as f:
            os.fsync(f.fileno())

    total_steps = config.wait + config.warmup + config.active
    with _quiet_kineto(), profile(
        activities=activities,
        schedule=schedule(wait=config.wait, warmup=config.warmup, active=config.active, repeat=1),
        on_trace_ready=on_ready,
        record_shapes=config.record_shapes,
        profile_memory=config.profile_memory,
        with_stack=config.with_stack,
        with_modules=config.with_modules,
    ) as prof:
        for _ in range(total_steps):
            with record_function(MODEL_LABEL):
                call_model(model, inputs)
            if device.type == "cuda":
                with record_function("harness::synchronize"):
                    sync()
            prof.step()

    events = prof.events()
    steps = max(sum(1 for e in events if e.name == MODEL_LABEL), 1)
    ops_raw = _avg_table(prof.key_averages(), steps, device.type, with_shapes=False)
    ops_by_shape_raw = _avg_table(prof.key_averages(group_by_input_shape=True), steps, device.type, with_shapes=True)
    peak = _peak_from_trace(exported["trace"], device.type) if "trace" in exported else None
    return Profile(
        events=events,
        steps=steps,
        device_type=device.type,
        ops_raw=ops_raw,
        ops_by_shape_raw=ops_by_shape_raw,
        trace_tmp=staged_trace,
        trace_name=trace_name if staged_trace is not None else None,
        peak_activation_bytes=peak,
    )
