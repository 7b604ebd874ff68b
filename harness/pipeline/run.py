"""The main job: measure, count, profile, join, write — for a scenario or any model.

``run_scenario`` / ``profile`` drive a workload (:mod:`harness.pipeline.workloads`)
through the stages in order and return a :class:`Run`. When a ``logdir`` is given,
everything lands in ``LOGDIR/<scenario>/<run_id>/``, built under a hidden name and renamed
when complete, then one row is appended to ``LOGDIR/history.csv``.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from ..core import fsio
from ..core.schema import Summary
from ..core.text import utc_iso
from ..errors import HarnessError, forward_error
from . import assemble, compiled, write
from . import scenario as scenario_mod
from . import workloads
from .environment import environment
from .measure import time_workload
from .prepare import Prepared, dtype_name, prepare_model, prepare_scenario
from .profiling import run_profiler, trace_file_name
from ..memory.measured import Measured, measure_or_error as measure_memory
from .spec import DEFAULT_ITERS, DEFAULT_WARMUP, ProfileConfig, RunSpec, model_config_extra

__all__ = ["Run", "execute", "profile", "run_scenario", "run_spec", "RunSpec", "ProfileConfig", "DEFAULT_WARMUP",
           "DEFAULT_ITERS", "model_config_extra"]


@dataclass
class Run:
    """A finished run. DataFrame columns and units are documented in README.md."""

    summary: Summary  # the run record (summary.json), built once by assemble.record
    ops: pd.DataFrame
    ops_by_shape: pd.DataFrame
    modules: pd.DataFrame
    samples: pd.DataFrame
    phase_samples: pd.DataFrame = field(default_factory=pd.DataFrame)
    kernels: pd.DataFrame = field(default_factory=pd.DataFrame)  # CUDA: per device kernel (kernels.csv)
    extra_tables: dict = field(default_factory=dict)  # the workload's own tables: name -> DataFrame (<name>.csv)
    path: Path | None = None
    counts: Any = None
    env: dict = field(default_factory=dict)
    peak: Any = None  # harness.hardware.Peak used for utilization and the roofline
    memory: Any = None  # harness.memory.measured.Measured: memory.csv and memory_timeline.png (None if not measured)
    findings: Any = None  # findings.json's document (harness.findings.analyze.document_for), None: not computed


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


def _open_rundir(root: Path | None, scenario: str, run_id: str) -> fsio.RunDir | None:
    if root is None:
        return None
    from ..tracking.history import read as read_history

    read_history(root)  # a corrupt history.csv is reported now (file and line), not after minutes of work
    fsio.clean_stale_tmp(root / scenario)
    return fsio.RunDir(root / scenario, run_id)


def _timed_attempt(workload, prep: Prepared, warmup: int, iters: int) -> tuple[Any, dict]:
    """One timed loop inside a contention probe: (Timing, the probe's figures and verdict)."""
    from .contention import ContentionProbe

    with ContentionProbe(prep.threads, prep.device.type, iterations=iters) as probe:
        timing = time_workload(workload, prep, warmup=warmup, iters=iters)
    return timing, probe.result()


def _least_disturbed(attempts: list[tuple[Any, dict]]) -> int:
    """Index of the attempt to keep: a quiet one first, then the one that waited least for a CPU."""
    def badness(c: dict) -> tuple:
        delay = c.get("run_delay_share")
        return (bool(c.get("disturbed")), delay if delay is not None else 1.0 - (c.get("cpu_share") or 0.0))

    return min(range(len(attempts)), key=lambda i: badness(attempts[i][1]))


def _the_models(scenario: str, fn: Callable[[], Any], failed: Callable[[Exception], HarnessError | None] | None = None):
    """``fn()``, whose exceptions are the model's: one-line ``forward_error`` (or ``failed(exc)`` when that
    names the failure, a compile's); a HarnessError or Ctrl-C passes through as it is."""
    try:
        return fn()
    except (HarnessError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise (failed(exc) if failed is not None else None) or forward_error(scenario, exc) from exc


def _measure(stages: "Stages", workload, prep: Prepared, scenario: str, warmup: int, iters: int,
             retries: int = 0) -> list[tuple[Any, dict]]:
    """The timed loop, re-timed up to ``retries`` times while disturbed; every attempt is kept.

    Only the loop's own exceptions are the model's (``forward_error``); what the stage's progress hook
    raises (a multi-rank job's barrier timing out on a hung peer) passes through as it is."""
    def attempts() -> list[tuple[Any, dict]]:
        out = [_timed_attempt(workload, prep, warmup, iters)]
        while out[-1][1].get("disturbed") and len(out) <= retries:
            out.append(_timed_attempt(workload, prep, warmup, iters))
        return out

    return stages.run("latency", lambda: _the_models(scenario, attempts))


def _setup(workload, prep: Prepared, scenario: str) -> None:
    """The workload's setup (a training run's steps once: with ``--compile``, that compiles)."""
    try:
        workload.setup(prep)
    except Exception as exc:
        failed = compiled.compile_failed(scenario, prep.compile["backend"], exc) if prep.compile else None
        if failed is not None:
            raise failed from exc
        raise


def _compile_stage(stages: "Stages", workload, prep: Prepared, scenario: str, begun: Any) -> dict | None:
    """A compiled model's setup and first iterations, timed apart (compile cost, graphs, breaks, cache)."""
    settings = prep.compile
    if settings is None:
        return None
    from .measure import synchronizer

    def warm() -> dict:
        return compiled.warm(lambda scope: workload.iteration(prep, scope), synchronizer(prep.device), settings,
                             begun, label=workload.occurrence)

    return stages.run("compile", lambda: _the_models(
        scenario, warm, lambda exc: compiled.compile_failed(scenario, settings["backend"], exc)))


def _after_timing(stages: "Stages", workload, prep: Prepared, spec: RunSpec, scenario: str, record: dict | None,
                  rank: Any) -> dict | None:
    """A compiled run's record after its timed loop: recompiles while timed, then eager vs compiled timed
    in this process (``vs_eager``; not on ranks, whose blocks would not stay in step across processes)."""
    if record is None:
        return None
    record = compiled.after_timing(record)
    budget = spec.vs_eager_budget_s
    if rank is not None or budget <= 0:
        record["vs_eager"] = {"skipped": "a rank of a multi-rank job" if rank is not None else "--vs-eager-s 0"}
        return record
    from . import versus_eager

    record["vs_eager"] = stages.run("vs_eager", lambda: _the_models(
        scenario, lambda: versus_eager.compare(workload, prep, budget)))
    return record


def _profile(stages: "Stages", workload, prep: Prepared, cfg: ProfileConfig, rundir, started: datetime, rank=None):
    worker = rank.worker if rank is not None else f"{socket.gethostname()}_{os.getpid()}"
    trace_name = trace_file_name(worker, str(int(started.timestamp() * 1000)), cfg.gzip)
    # the trace takes its plugin-visible name only once the run directory is complete
    staged = rundir.defer(".trace.staged", trace_name) if rundir is not None else None
    if rank is not None:  # one rank of a job: rank 0 gathers the trace and writes the job's directory
        staged = rank.trace_path
    from .contention import ContentionProbe

    probe = ContentionProbe(prep.threads, prep.device.type, iterations=cfg.wait + cfg.warmup + cfg.active)
    with probe:
        prof = stages.run("profile", lambda: run_profiler(workload, prep, config=cfg, staged_trace=staged,
                                                          trace_name=trace_name))
    return prof, probe.result()


def _join(parts_kw: dict, prep: Prepared, prof, counts) -> assemble.Parts:
    from ..hardware import peak_for
    from .join import join

    env = environment(prep.device)
    flags = env.get("gpu")  # on CUDA: the TF32/cuDNN flags read once (harness.hardware.cuda_flags)
    peak = peak_for(prep.device.type, dtype_name(prep.dtype), device_name=env["device_name"], threads=prep.threads,
                    cuda_flags=flags)
    from .provenance import recorder_of

    joined = join(prof, counts, peak=peak, provenance=recorder_of(prep.model) if prep.compile else None)
    return assemble.Parts(prep=prep, prof=prof, counts=counts, joined=joined, peak=peak, env=env,
                          finished_at=utc_iso(), **parts_kw)


def _assemble(parts: assemble.Parts) -> Run:
    """The run record and tables, built once (:func:`harness.pipeline.assemble.record`)."""
    trace = parts.prof.trace_tmp
    trace_bytes = trace.stat().st_size if trace is not None and trace.exists() else None
    ops, by_shape, modules = assemble.tables(parts)
    summary = assemble.record(parts, trace_bytes, ops, modules)
    return Run(summary=summary, ops=ops, ops_by_shape=by_shape, modules=modules,
               samples=assemble.samples_frame(parts), phase_samples=parts.timing.phases,
               kernels=parts.joined.kernels, extra_tables=parts.workload.tables(parts),
               counts=parts.counts, env=parts.env, peak=parts.peak,
               memory=parts.memory if isinstance(parts.memory, Measured) else None)


def _commit(run: Run, rundir: fsio.RunDir, root: Path, stages: "Stages", write_extras: bool) -> None:
    """Write everything into the hidden run dir, rename it into place, add the history row."""
    from ..core import record

    stages.run("write", lambda: write.tables(run, rundir.path))
    if write_extras:
        write.extras(run, rundir, root, run_index(root, run.summary["config_key"]))
    run.summary = record.finalize(run.summary, stage_times_s=dict(stages.times))
    record.dump(rundir.path / "summary.json", run.summary)
    fsio.fault_point("commit")
    run.path = rundir.commit()
    write.link_for_hta(run.path, run.summary["trace_files"][0] if run.summary["trace_files"] else None)
    from ..tracking.history import append

    append(root, dict(run.summary))


def execute(prep: Prepared, spec: RunSpec, *, scenario: str, workload: workloads.Workload | None = None,
            progress: Callable[[str], None] | None = None, write_extras: bool = True,
            stage_times: dict | None = None, rank: Any = None) -> Run:
    """Run every stage of ``spec`` on a prepared model. See README's "What a run does".

    ``workload`` defaults to the spec's. ``rank`` (:class:`harness.distributed.job.RankRun`, with
    ``spec.logdir=None``) makes this one rank of a multi-rank job: the job's ``run_id`` and
    ``started``, and the trace written to ``rank.trace_path`` under the worker name ``rank.worker``.
    """
    workload = workload or workloads.get(spec.workload, **spec.workload_options)
    warmup, iters, cfg = spec.warmup_or_default, spec.iters_or_default, spec.profile
    stages = Stages(progress)
    stages.times.update(stage_times or {})
    root = check_logdir(Path(spec.logdir)) if spec.logdir is not None else None
    started = rank.started if rank is not None else datetime.now(timezone.utc)
    run_id = rank.run_id if rank is not None else fsio.new_run_id(started)
    rundir = _open_rundir(root, scenario, run_id)
    try:
        begun = compiled.begin() if prep.compile is not None else None
        _setup(workload, prep, scenario)
        with workload.grad_mode():
            compile_record = _compile_stage(stages, workload, prep, scenario, begun)
            attempts = _measure(stages, workload, prep, scenario, warmup, iters, spec.retry_disturbed)
            compile_record = _after_timing(stages, workload, prep, spec, scenario, compile_record, rank)
            counts = stages.run("count", lambda: compiled.count_eagerly(workload, prep))
            prof, profiled_contention = _profile(stages, workload, prep, cfg, rundir, started, rank)
            memory = stages.run("memory", lambda: measure_memory(workload, prep))
            if isinstance(memory, Measured):
                from ..memory.beside import forecast_beside

                memory.forecast = stages.run("forecast", lambda: forecast_beside(workload, prep, memory.peak.bytes))
        kept = _least_disturbed(attempts)
        parts_kw = dict(workload=workload, scenario=scenario, run_id=run_id, started=started, tag=spec.tag,
                        warmup=warmup, iters=iters, config=cfg, timing=attempts[kept][0], attempts=attempts,
                        kept=kept, profiled_contention=profiled_contention, model_options=dict(spec.model),
                        compile=compile_record, memory=memory,
                        path=str(rundir.final) if rundir is not None else None)
        run = _assemble(stages.run("join", lambda: _join(parts_kw, prep, prof, counts)))
        from ..findings.analyze import document_for

        run.findings = stages.run("findings", lambda: document_for(run, spec))  # before prep.restore: its threads
        if rundir is not None and root is not None:  # a run dir is opened under a root, never without one
            _commit(run, rundir, root, stages, write_extras)
        else:
            from ..core.record import finalize

            run.summary = finalize(run.summary, stage_times_s=dict(stages.times))
        return run
    except BaseException:
        if rundir is not None:
            rundir.abort()
        raise
    finally:
        workload.teardown(prep)
        prep.restore()


def run_index(root: Path, config_key: str) -> int:
    """This run's index among the runs of its config in history.csv (0 for the first)."""
    from ..tracking.history import read

    hist = read(root)
    return int((hist["config_key"] == config_key).sum()) if len(hist) else 0


def profile(
    model: torch.nn.Module,
    inputs: Any,
    *,
    device: Any = None,
    dtype: Any = None,
    warmup: int = DEFAULT_WARMUP,
    iters: int = DEFAULT_ITERS,
    logdir: str | os.PathLike | None = None,
    name: str | None = None,
    tag: str | None = None,
    threads: int | None = None,
    batch_size: int | None = None,
    workload: str | None = None,
    workload_options: dict | None = None,
    profile_config: ProfileConfig | None = None,
    retry_disturbed: int = 0,
    compile: str | None = None,
    vs_eager_s: float | None = None,
    **options: Any,
) -> Run:
    """Measure, profile and count ``model`` on ``inputs``; write a run dir when ``logdir`` is given.

    ``workload`` (default ``forward``) takes its own options as keywords too:
    ``profile(model, ids, workload="generate", prompt_len=128, new_tokens=64)``.

    The caller's model is left as it was: defaults are its own device and dtype; another
    device or dtype runs on a copy; modes and ``requires_grad`` flags are restored.
    ``name`` defaults to the model's class name. ``compile``: a ``torch.compile`` mode
    (``"default"``, ...) to run the model compiled; it is compiled in place (``nn.Module.compile``)
    and stays so afterwards; ``vs_eager_s`` (default 5, 0 to skip) is how long it is then timed against
    itself run eagerly (``summary["compile"]["vs_eager"]``). Returns a :class:`Run`.
    """
    spec = RunSpec(target=name or type(model).__name__, workload=workload, compile=compile, vs_eager_s=vs_eager_s,
                   workload_options={**(workload_options or {}), **options}, batch_size=batch_size,
                   threads=threads, warmup=warmup, iters=iters, retry_disturbed=retry_disturbed,
                   profile=profile_config or ProfileConfig(), logdir=None if logdir is None else str(logdir), tag=tag)
    wl = workloads.get(spec.workload, **spec.workload_options)  # bad options fail before the model is touched
    prep = prepare_model(model, inputs, name=name, device=device, dtype=dtype, batch_size=batch_size, threads=threads)
    compile_model(prep, spec)
    return execute(prep, spec, scenario=prep.name, workload=wl)


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
    workload: str | None = None,
    workload_options: dict | None = None,
    model_options: Any = None,
    profile_config: ProfileConfig | None = None,
    progress: Callable[[str], None] | None = None,
    retry_disturbed: int = 0,
    compile: str | None = None,
    vs_eager_s: float | None = None,
) -> Run:
    """Load a scenario (built-in name, file path or model by name with ``model_options``:
    :class:`harness.models.ModelOptions`), build it, and run it (:func:`run_spec`)."""
    import dataclasses

    from ..models import ModelOptions

    model = dataclasses.asdict(model_options) if isinstance(model_options, ModelOptions) else dict(model_options or {})
    spec = RunSpec(target=str(name_or_path), workload=workload, workload_options=workload_options or {},
                   model=model, batch_size=batch_size, device=None if device is None else str(device),
                   dtype=None if dtype is None else dtype_name(dtype) if isinstance(dtype, torch.dtype) else str(dtype),
                   threads=threads, warmup=warmup, iters=iters, retry_disturbed=retry_disturbed, compile=compile,
                   vs_eager_s=vs_eager_s, profile=profile_config or ProfileConfig(), logdir=None if logdir is None else str(logdir), tag=tag)
    return run_spec(spec, progress=progress)


def build(spec: RunSpec, stages: Stages | None = None) -> tuple[Any, workloads.Workload, Prepared]:
    """The spec's scenario loaded, its workload made (options checked) and its model prepared:
    ``(scenario, workload, prepared)``. ``channels_last`` puts the model and its 4-d inputs in that format."""
    stages = stages or Stages(None)
    sc = stages.run("load", lambda: scenario_mod.load(spec.target, spec.model_options()))
    wl = workloads.get(spec.workload or sc.workload, **spec.workload_options)
    if spec.logdir is not None:
        check_logdir(Path(spec.logdir))
    prep = stages.run("build", lambda: prepare_scenario(sc, batch_size=spec.batch_size, device=spec.device,
                                                        dtype=spec.dtype, threads=spec.threads,
                                                        channels_last=spec.channels_last))
    prep.config_extra = {**model_config_extra(spec.model), **({"channels_last": 1} if spec.channels_last else {})}
    compile_model(prep, spec)
    return sc, wl, prep


def compile_model(prep: Prepared, spec: RunSpec) -> None:
    """``--compile``: the prepared model compiled in place (:mod:`harness.pipeline.compiled`), and its part
    of the config key (eager and compiled runs are never one config)."""
    if spec.compile is not None:
        prep.compile = compiled.apply(prep.model, spec.compile, spec.compile_backend, spec.dynamic, prep.device.type)
        prep.config_extra = {**prep.config_extra, **spec.compile_config_extra()}


def run_spec(spec: RunSpec, progress: Callable[[str], None] | None = None) -> Run:
    """Run one :class:`RunSpec` (a scenario, a file or a model by name) through every stage."""
    stages = Stages(progress)
    try:
        sc, wl, prep = build(spec, stages)
        return execute(prep, spec, scenario=sc.name, workload=wl, progress=progress, stage_times=stages.times)
    except Exception as exc:  # out of memory (MemoryError included): one line, the forecast split, the batch that fits
        from ..memory.oom import reraise

        reraise(spec, exc)
