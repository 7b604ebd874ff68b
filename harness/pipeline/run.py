"""The main job: measure, profile, count, join, write — for a scenario or any model.

``run_scenario`` / ``profile`` go through the stages in order and return a
:class:`Run`. When a ``logdir`` is given, everything lands in
``LOGDIR/<scenario>/<run_id>/``, built under a hidden name and renamed when complete,
then one row is appended to ``LOGDIR/history.csv``.
"""
from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from .. import __version__
from ..core import fsio
from ..errors import HarnessError, forward_error
from .measure import latency_stats, time_forward, call_model
from .prepare import Prepared, dtype_name, prepare_model, prepare_scenario, check_positive
from .profiling import ProfileConfig, run_profiler, trace_file_name
from . import scenario as scenario_mod

SCHEMA_VERSION = 1
DEFAULT_WARMUP = 5
DEFAULT_ITERS = 20


@dataclass
class Run:
    """A finished run. DataFrame columns and units are documented in README.md."""

    summary: dict
    ops: pd.DataFrame
    ops_by_shape: pd.DataFrame
    modules: pd.DataFrame
    samples: pd.DataFrame
    path: Path | None = None
    counts: Any = None
    env: dict = field(default_factory=dict)
    peak: Any = None  # harness.hardware.Peak used for utilization and the roofline


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from ..hardware import cpu_info

    return cpu_info().get("model_name") or platform.processor() or "cpu"


def environment(device: torch.device) -> dict:
    """What the numbers depend on: versions, CPU/GPU, threads, harness commit."""
    from ..hardware import cpu_info

    env = {
        "schema_version": SCHEMA_VERSION,
        "harness_version": __version__,
        "git_commit": _git_commit(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_info(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "mkldnn_enabled": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        "device": device.type,
        "device_name": _device_name(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = {"name": props.name, "total_memory_bytes": props.total_memory,
                      "multi_processor_count": props.multi_processor_count,
                      "capability": f"{props.major}.{props.minor}",
                      "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                      "float32_matmul_precision": torch.get_float32_matmul_precision()}
    return env


def check_logdir(logdir: Path) -> Path:
    """Fail early (exit 2) when LOGDIR cannot hold a run: a file, read-only, or full."""
    logdir = Path(logdir)
    if logdir.exists() and not logdir.is_dir():
        raise HarnessError(f"--logdir {logdir} is a file, not a directory; pick a directory")
    probe = logdir / f"{fsio.TMP_PREFIX}probe-{os.getpid()}"
    try:
        logdir.mkdir(parents=True, exist_ok=True)
        # 64 KiB, fsynced: a full disk or a quota shows up here, before the expensive work
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except PermissionError:
        raise HarnessError(f"--logdir {logdir} is not writable; pick a directory you can write to") from None
    except OSError as exc:
        raise HarnessError(f"--logdir {logdir} cannot be written ({exc.strerror or exc}); free space or pick another directory") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return logdir


class Stages:
    """Wall time of each stage (s), for the terminal and benchmarks/run_breakdown.py."""

    def __init__(self, progress: Callable[[str], None] | None):
        self.times: dict[str, float] = {}
        self.progress = progress

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        fsio.fault_point(name)
        if self.progress:
            self.progress(name)
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.times[name] = time.perf_counter() - t0


def _count(prep: Prepared):
    from ..count import count

    return count(prep.model, prep.inputs)


def execute(
    prep: Prepared,
    *,
    scenario: str,
    warmup: int = DEFAULT_WARMUP,
    iters: int = DEFAULT_ITERS,
    logdir: str | os.PathLike | None = None,
    tag: str | None = None,
    profile_config: ProfileConfig | None = None,
    progress: Callable[[str], None] | None = None,
    write_extras: bool = True,
    stage_times: dict | None = None,
) -> Run:
    """Run every stage on a prepared model. See README's "What a run does"."""
    warmup = check_positive("--warmup", warmup, minimum=0)
    iters = check_positive("--iters", iters, minimum=1)
    cfg = profile_config or ProfileConfig()
    stages = Stages(progress)
    if stage_times:
        stages.times.update(stage_times)
    root = check_logdir(Path(logdir)) if logdir is not None else None
    started = datetime.now(timezone.utc)
    run_id = fsio.new_run_id(started)
    device = prep.device

    rundir = None
    if root is not None:
        # a corrupt history.csv is reported now (file and line), not after minutes of work
        from ..tracking.history import read as read_history

        read_history(root)
        fsio.clean_stale_tmp(root / scenario)
        rundir = fsio.RunDir(root / scenario, run_id)
    try:
        with torch.inference_mode():
            try:
                timing = stages.run("latency", lambda: time_forward(prep.model, prep.inputs, warmup=warmup, iters=iters, device=device))
            except (HarnessError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise forward_error(scenario, exc) from exc
            counts = stages.run("count", lambda: _count(prep))
            trace_name = trace_file_name(f"{socket.gethostname()}_{os.getpid()}", str(int(started.timestamp() * 1000)), cfg.gzip)
            # the trace takes its plugin-visible name only once the run directory is complete
            staged = rundir.defer(".trace.staged", trace_name) if rundir is not None else None
            prof = stages.run("profile", lambda: run_profiler(prep.model, prep.inputs, device=device, config=cfg,
                                                             staged_trace=staged, trace_name=trace_name))
        run = stages.run("join", lambda: _assemble(prep, scenario, run_id, started, tag, warmup, iters, cfg, timing, counts, prof))
        if rundir is not None:
            stages.run("write", lambda: _write(run, rundir, prof, root, scenario, write_extras))
        run.summary["stage_times_s"] = dict(stages.times)
        if rundir is not None:
            fsio.atomic_write_json(rundir.path / "summary.json", run.summary)
            fsio.fault_point("commit")
            run.path = rundir.commit()
            run.summary["path"] = str(run.path)
            _link_for_hta(run.path, prof.trace_name)
            _append_history(root, run.summary)
        return run
    except BaseException:
        if rundir is not None:
            rundir.abort()
        raise


def _assemble(prep, scenario, run_id, started, tag, warmup, iters, cfg, timing, counts, prof) -> Run:
    from ..hardware import peak_for
    from .join import join

    device, dtype = prep.device, prep.dtype
    env = environment(device)
    peak = peak_for(device.type, dtype_name(dtype), device_name=env["device_name"], threads=prep.threads)
    joined = join(prof, counts, peak_flop_per_s=peak.flop_per_s, peak_bytes_per_s=peak.bytes_per_s)
    lat = latency_stats(timing.samples_s)
    p50 = lat["p50"]
    flops = int(counts.flops)
    achieved = flops / p50 if p50 > 0 else None
    weights_bytes = sum(t.numel() * t.element_size() for t in {id(p): p for p in
                        list(prep.model.parameters()) + list(prep.model.buffers())}.values())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            call_model(prep.model, prep.inputs)
        torch.cuda.synchronize(device)
        peak_mem = int(torch.cuda.max_memory_allocated(device))
        peak_act = prof.peak_activation_bytes
    else:
        peak_act = prof.peak_activation_bytes
        peak_mem = weights_bytes + _input_bytes(prep.inputs) + (peak_act or 0)
    samples = pd.DataFrame({"iteration": range(len(timing.samples_s)), "latency_s": timing.samples_s})
    config_key = f"{scenario}|bs={prep.batch_size}|{dtype_name(dtype)}|{device.type}|threads={prep.threads}|tag={tag or ''}"
    env_key = f"torch={torch.__version__}|{env['device_name']}|{env['git_commit']}"
    total_flops = counts.flops + counts.other_flops
    summary = {
        "schema_version": SCHEMA_VERSION,
        "scenario": scenario,
        "run_id": run_id,
        "started_at": started.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "finished_at": None,
        "tag": tag,
        "device": device.type,
        "device_name": env["device_name"],
        "dtype": dtype_name(dtype),
        "batch_size": prep.batch_size,
        "threads": prep.threads,
        "warmup": warmup,
        "iters": iters,
        "params": int(counts.params),
        "trainable_params": int(counts.trainable_params),
        "buffers": int(counts.buffers),
        "macs": int(counts.macs),
        "flops": flops,
        "other_flops": int(counts.other_flops),
        "bytes": int(counts.bytes),
        "latency_s": lat,
        "throughput_samples_per_s": prep.batch_size / p50 if p50 > 0 else None,
        "achieved_flop_per_s": achieved,
        "peak_flop_per_s": peak.flop_per_s,
        "peak_source": peak.source,
        "peak_note": peak.note,
        "utilization": (achieved / peak.flop_per_s) if achieved and peak.flop_per_s else None,
        "mem_bandwidth_bytes_per_s": peak.bytes_per_s,
        "achieved_bytes_per_s": counts.bytes / p50 if p50 > 0 else None,
        "arithmetic_intensity": total_flops / counts.bytes if counts.bytes else None,
        "peak_memory_bytes": peak_mem,
        "peak_activation_bytes": peak_act,
        "weights_bytes": weights_bytes,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "coverage": joined.coverage,
        "profiled": {
            "steps": prof.steps,
            "wait": cfg.wait, "warmup": cfg.warmup, "active": cfg.active,
            "time_per_forward_s": joined.time_per_forward_s,
            "op_time_per_forward_s": joined.op_time_per_forward_s,
            "time_source": "cuda" if device.type == "cuda" else "cpu",
        },
        "trace_files": [prof.trace_name] if prof.trace_name else [],
        "trace_bytes": None,
        "torch_version": torch.__version__,
        "harness_version": __version__,
        "git_commit": env["git_commit"],
        "config_key": config_key,
        "env_key": env_key,
        "path": None,
    }
    ops = joined.ops
    return Run(summary=summary, ops=ops, ops_by_shape=joined.ops_by_shape, modules=joined.modules,
               samples=samples, counts=counts, env=env, peak=peak)


def _link_for_hta(run_dir: Path, trace_name: str | None) -> None:
    """``<run>/hta/rank0.trace.json[.gz]``: a hard link to the trace (no extra space).

    Holistic Trace Analysis reads every ``*.json`` of its ``trace_dir`` as a trace, so
    ``TraceAnalysis(trace_dir=<run>)`` could pick summary.json; ``trace_dir=<run>/hta``
    holds the trace alone. The name lacks ``.pt.trace.json`` so the profiler plugin does
    not list it as a second run.
    """
    if not trace_name:
        return
    src = run_dir / trace_name
    dst_dir = run_dir / "hta"
    try:
        dst_dir.mkdir(exist_ok=True)
        dst = dst_dir / ("rank0.trace.json" + (".gz" if trace_name.endswith(".gz") else ""))
        try:
            os.link(src, dst)
        except OSError:  # file systems without hard links
            import shutil

            shutil.copyfile(src, dst)
    except OSError:
        pass  # a convenience; the run is complete without it


def _input_bytes(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return inputs.numel() * inputs.element_size()
    if isinstance(inputs, dict):
        return sum(_input_bytes(v) for v in inputs.values())
    if isinstance(inputs, (tuple, list)):
        return sum(_input_bytes(v) for v in inputs)
    return 0


OPS_COLUMNS_FIRST = ["name", "kind", "calls", "self_time_s", "time_share", "macs", "flops", "other_flops", "total_flops",
                     "bytes", "achieved_flop_per_s", "achieved_total_flop_per_s", "achieved_bytes_per_s",
                     "arithmetic_intensity", "peak_flop_per_s", "peak_bytes_per_s", "utilization",
                     "bandwidth_utilization", "bound", "counted"]


def _ordered(df: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    cols = [c for c in first if c in df.columns] + [c for c in df.columns if c not in first]
    return df[cols]


def _write(run: Run, rundir: fsio.RunDir, prof, root: Path, scenario: str, write_extras: bool) -> None:
    d = rundir.path
    s = run.summary
    s["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if prof.trace_tmp is not None and prof.trace_tmp.exists():
        s["trace_bytes"] = prof.trace_tmp.stat().st_size
    run.ops = _ordered(run.ops, OPS_COLUMNS_FIRST)
    run.ops_by_shape = _ordered(run.ops_by_shape, OPS_COLUMNS_FIRST[:1] + ["input_shapes"] + OPS_COLUMNS_FIRST[1:])
    fsio.atomic_write_csv(d / "ops.csv", run.ops)
    fsio.atomic_write_csv(d / "ops_by_shape.csv", run.ops_by_shape)
    fsio.fault_point("write-mid")
    fsio.atomic_write_csv(d / "modules.csv", run.modules)
    fsio.atomic_write_csv(d / "samples.csv", run.samples)
    fsio.atomic_write_json(d / "env.json", run.env)
    if not write_extras:
        return
    images = _pictures(run, d)
    _tensorboard(run, rundir, root, scenario, images)
    from ..report.html import write_report

    write_report(d / "report.html", s, run.ops, run.modules, images)


def _pictures(run: Run, d: Path) -> dict[str, Path]:
    from ..report.pictures import roofline_png, time_by_module_png

    s = run.summary
    title = f"{s['scenario']} · batch {s['batch_size']} · {s['dtype']} · {s['device_name']}"
    model_point = {"total_flops": s["flops"] + s["other_flops"], "bytes": s["bytes"],
                   "time_s": s["latency_s"]["p50"]}
    pts = run.ops_by_shape[run.ops_by_shape.kind == "op"].copy()
    images = {
        "roofline": roofline_png(d / "roofline.png", pts, run.peak, model_point, title),
        "time_by_module": time_by_module_png(d / "time_by_module.png", run.modules, title),
    }
    return images


def _tensorboard(run: Run, rundir: fsio.RunDir, root: Path, scenario: str, images: dict) -> None:
    from ..report.tensorboard import write_run_summaries

    s = run.summary
    step = _run_index(root, s["config_key"])
    safe = "".join(c if c.isalnum() or c in "-_=." else "_" for c in s["config_key"].split("|", 1)[1])
    # event files are staged in the hidden run dir and take their names on commit
    write_run_summaries(rundir.path, s, run.ops, run.modules, images, trend_dir=root / scenario / "trends" / safe,
                        step=step, defer=rundir.defer)


def _run_index(root: Path, config_key: str) -> int:
    """This run's index among the runs of its config in history.csv (0 for the first)."""
    from ..tracking.history import read

    hist = read(root)
    return int((hist["config_key"] == config_key).sum()) if len(hist) else 0


def _append_history(root: Path, summary: dict) -> None:
    from ..tracking.history import append

    append(root, summary)


def profile(
    model: torch.nn.Module,
    inputs: Any,
    *,
    device: Any = "cpu",
    dtype: Any = "float32",
    warmup: int = DEFAULT_WARMUP,
    iters: int = DEFAULT_ITERS,
    logdir: str | os.PathLike | None = None,
    name: str = "model",
    tag: str | None = None,
    threads: int | None = None,
    batch_size: int | None = None,
    profile_config: ProfileConfig | None = None,
) -> Run:
    """Measure, profile and count ``model`` on ``inputs``; write a run dir when ``logdir`` is given.

    The model is moved to ``device``/``dtype`` and put in eval mode (as a scenario run
    does). Returns a :class:`Run`.
    """
    prep = prepare_model(model, inputs, name=name, device=device, dtype=dtype, batch_size=batch_size, threads=threads)
    return execute(prep, scenario=name, warmup=warmup, iters=iters, logdir=logdir, tag=tag, profile_config=profile_config)


def run_scenario(
    name_or_path: str | os.PathLike,
    *,
    batch_size: int | None = None,
    device: Any = None,
    dtype: Any = None,
    warmup: int | None = None,
    iters: int | None = None,
    logdir: str | os.PathLike | None = "logs",
    tag: str | None = None,
    threads: int | None = None,
    profile_config: ProfileConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> Run:
    """Load a scenario (built-in name or file path), build it, and :func:`execute` it."""
    stages = Stages(progress)
    sc = stages.run("load", lambda: scenario_mod.load(name_or_path))
    if logdir is not None:
        check_logdir(Path(logdir))
    if warmup is not None:
        check_positive("--warmup", warmup, minimum=0)
    if iters is not None:
        check_positive("--iters", iters, minimum=1)
    prep = stages.run("build", lambda: prepare_scenario(sc, batch_size=batch_size, device=device, dtype=dtype, threads=threads))
    return execute(prep, scenario=sc.name, warmup=DEFAULT_WARMUP if warmup is None else warmup,
                   iters=DEFAULT_ITERS if iters is None else iters, logdir=logdir, tag=tag,
                   profile_config=profile_config, progress=progress, stage_times=stages.times)
