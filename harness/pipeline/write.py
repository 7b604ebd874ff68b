"""Write a finished run into its (hidden) run directory: pure I/O, no figure computed here.

Files and their columns are documented in README's "Files of a run".
"""
from __future__ import annotations

from pathlib import Path

from ..core import fsio
from ..core.schema import config_label


def tables(run, d: Path) -> None:
    """ops.csv, ops_by_shape.csv, modules.csv, samples.csv, phase_samples.csv, env.json (+ kernels.csv on CUDA,
    memory.csv when memory was measured)."""
    fsio.atomic_write_csv(d / "ops.csv", run.ops)
    fsio.atomic_write_csv(d / "ops_by_shape.csv", run.ops_by_shape)
    fsio.fault_point("write-mid")
    fsio.atomic_write_csv(d / "modules.csv", run.modules)
    fsio.atomic_write_csv(d / "samples.csv", run.samples)
    fsio.atomic_write_csv(d / "phase_samples.csv", run.phase_samples)
    if len(run.kernels):
        fsio.atomic_write_csv(d / "kernels.csv", run.kernels)
    for name, df in run.extra_tables.items():
        fsio.atomic_write_csv(d / f"{name}.csv", df)
    if run.memory is not None:  # measured memory by category (harness.memory.measured)
        fsio.atomic_write_csv(d / "memory.csv", run.memory.table)
    fsio.atomic_write_json(d / "env.json", run.env)
    if run.findings is not None:  # README "Findings"
        fsio.atomic_write_json(d / "findings.json", run.findings)


def pictures(run, d: Path) -> dict[str, Path]:
    """roofline.png, time_by_module.png (one panel per phase, per the workload's word) and memory_timeline.png
    (when memory was measured); their paths by name."""
    from ..report.cells import iteration_word
    from ..report.pictures import model_point, roofline_png, time_by_module_png

    s = run.summary
    title = f"{s['scenario']} · batch {s['batch_size']} · {s['dtype']} · {s['device_name']}"
    pts = run.ops_by_shape[run.ops_by_shape.kind == "op"].copy()
    exceeded = s.get("peak_exceeded")
    roofline = roofline_png(d / "roofline.png", pts, run.peak, model_point(s), title, phases=s.get("phases"),
                            exceeded=exceeded, kernels=run.kernels if s.get("compile") else None)
    modules = time_by_module_png(d / "time_by_module.png", run.modules, title, exceeded=exceeded,
                                 phases=list(s.get("phase_names") or []) or None, word=iteration_word(s))
    out = {"roofline": roofline.path, "time_by_module": modules.path}
    if run.memory is not None:
        from ..report.memory_picture import memory_timeline_png

        out["memory_timeline"] = memory_timeline_png(d / "memory_timeline.png", run.memory.table,
                                                     run.memory.boundaries(), f"live memory by category · {title}").path
    return out


def tensorboard(run, rundir: fsio.RunDir, root: Path, step: int, images: dict) -> None:
    """Event files staged in the hidden run dir; they take their names on commit."""
    from ..report.tensorboard import write_run_summaries

    s = run.summary
    safe = "".join(c if c.isalnum() or c in "-_=." else "_" for c in config_label(s["config_key"]))
    write_run_summaries(rundir.path, s, run.ops, run.modules, images, trend_dir=root / s["scenario"] / "trends" / safe,
                        step=step, defer=rundir.defer, findings=run.findings)


def extras(run, rundir: fsio.RunDir, root: Path, step: int) -> None:
    """Pictures, TensorBoard summaries and report.html."""
    from ..report.html import write_report

    d = rundir.path
    images = pictures(run, d)
    tensorboard(run, rundir, root, step, images)
    write_report(d / "report.html", run.summary, run.ops, run.modules, images, kernels=run.kernels,
                 findings=run.findings)


def link_for_hta(run_dir: Path, trace_name: str | None, rank: int = 0) -> None:
    """``<run>/hta/rank<rank>.trace.json[.gz]``: a hard link to the trace (no extra space).

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
        dst = dst_dir / (f"rank{rank}.trace.json" + (".gz" if trace_name.endswith(".gz") else ""))
        try:
            import os

            os.link(src, dst)
        except OSError:  # file systems without hard links
            import shutil

            shutil.copyfile(src, dst)
    except OSError:
        pass  # a convenience; the run is complete without it
