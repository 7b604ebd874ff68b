"""Sweeps: one full run per point (batch size x dtype x threads x workload options), a table and a plot.

Each point is the sweep's base :class:`harness.pipeline.spec.RunSpec` with some fields replaced
(``batch_size``, ``dtype``, ``threads``, ``workload_options``: ``--prompt-lens 32,128`` sweeps
``prompt_len``), run by :func:`harness.pipeline.run.run_spec` (a complete run directory, a
history row); the points are the product of every list given. A point that fails — out of
memory, a dtype the device cannot run, a forward that raises — is recorded with its reason and
the sweep goes on. ``sweep.csv`` is rewritten atomically after every point, so a sweep that is
stopped keeps what it measured.
Output: ``LOGDIR/<scenario>/sweeps/<sweep_id>/sweep.csv``, ``sweep.json`` and ``sweep.png``
(drawn by :func:`harness.report.trends.sweep_figure`). Each point also records how busy the
machine was (``cpu_share``, ``disturbed`` from the run's ``summary["contention"]``) and which
peak its utilization is measured against (``peak_flop_per_s``, ``peak_source``: the peak
changes with the thread count). After :data:`COLUMNS` come ``workload``, one column per swept
workload option and the workload's phase p50 columns (``Workload.history_columns()``).
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.text import utc_iso
from ..errors import HarnessError, forward_error
from ..pipeline.spec import RunSpec

COLUMNS = ["sweep_id", "point", "scenario", "batch_size", "dtype", "threads", "device", "status", "reason", "run_id",
           "run_dir", "latency_p50_s", "latency_p90_s", "throughput_samples_per_s", "flops", "achieved_flop_per_s",
           "utilization", "peak_flop_per_s", "peak_source", "peak_memory_bytes", "cpu_share", "disturbed", "wall_s"]


def parse_ints(text: str, what: str) -> list[int]:
    """``1,2,4`` -> ``[1, 2, 4]`` (whole numbers >= 1, duplicates dropped); exit 2 naming ``what`` otherwise."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise HarnessError(f"{what} {text!r}: {part!r} is not a whole number (give e.g. 1,2,4,8)") from None
        if v < 1:
            raise HarnessError(f"{what} {text!r}: values must be at least 1")
        if v not in out:
            out.append(v)
    if not out:
        raise HarnessError(f"{what} is empty; give e.g. 1,2,4,8")
    return out


def parse_dtypes(text: str | None) -> list[str | None]:
    """``fp32,bf16`` -> ``["float32", "bfloat16"]`` (``[None]``: the scenario's); exit 2 for an unknown one."""
    if text is None:
        return [None]
    from ..core.dtypes import RUN_DTYPES, canonical

    out: list[str | None] = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        name = canonical(part)
        if name not in RUN_DTYPES:
            raise HarnessError(f"--dtypes {text!r}: unknown dtype {part.strip()!r}; use {', '.join(RUN_DTYPES)}")
        if name not in out:
            out.append(name)
    if not out:
        raise HarnessError("--dtypes is empty; give e.g. float32,bfloat16")
    return out


def parse_option_list(text: str, opt: Any) -> list[Any]:
    """A workload option's sweep list (``--prompt-lens 32,128``): each value checked by the
    :class:`harness.pipeline.workloads.Option`, duplicates dropped; exit 2 naming the list flag."""
    out: list[Any] = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        try:
            value = opt.parse(part.strip())
        except HarnessError as exc:
            raise HarnessError(f"{opt.plural_flag} {text!r}: {exc.message}") from None
        if value not in out:
            out.append(value)
    if not out:
        raise HarnessError(f"{opt.plural_flag} is empty; give comma-separated values")
    return out


def check_swept(workload: str, lists: dict[str, list], fixed: dict[str, Any] | None = None,
                scenario: str | None = None) -> type:
    """The class of ``workload``, after checking that every swept option (``lists``) is one of its own
    options, not also given as a single value, and that the fixed options (``fixed``) apply (exit 2).
    ``scenario``: the scenario whose default the workload is (named in the message)."""
    from ..pipeline import workloads

    cls = workloads.cls_for(workload)
    if cls is None:
        raise HarnessError(f"unknown workload '{workload}'; use one of {', '.join(workloads.names())}")
    declared = workloads.declared_options()
    for name in lists:
        if name not in cls.option_names():
            own = ", ".join(o.flag for o in cls.options_declared) or "none"
            whose = f"the workload of {scenario}, {cls.name}" if scenario else f"--workload {cls.name}"
            raise HarnessError(f"{declared[name].plural_flag} does not apply to {whose} (its options: {own})")
        if (fixed or {}).get(name) is not None:
            raise HarnessError(f"{declared[name].flag} and {declared[name].plural_flag} both given; use one")
    cls(**{**(fixed or {}), **{k: vs[0] for k, vs in lists.items()}})
    return cls


@dataclass
class Point:
    """One point: its batch size, dtype, threads (None: the scenario's or torch's), the values of the
    swept workload options, and ``spec``: the point's :class:`RunSpec` as a dict (what its job runs)."""

    batch_size: int | None
    dtype: str | None
    threads: int | None
    options: dict = field(default_factory=dict)
    spec: dict | None = None

    @property
    def size(self) -> float:
        """The point's work relative to the others: batch size times each swept whole-number option (ETA)."""
        size = float(self.batch_size or 1)
        for v in self.options.values():
            size *= v if isinstance(v, int) and not isinstance(v, bool) else 1
        return size


def make_points(base: RunSpec, batch_sizes: list, dtypes: list, threads: list, lists: dict[str, list]) -> list[Point]:
    """Every point of the product (dtype x threads x workload options x batch size, batch size innermost),
    each with its spec: ``base`` with those fields replaced."""
    points = []
    for dt, th, combo, bs in itertools.product(dtypes, threads, itertools.product(*lists.values()), batch_sizes):
        opts = dict(zip(lists, combo))
        spec = base.replace(batch_size=base.batch_size if bs is None else bs, dtype=dt or base.dtype,
                            threads=th or base.threads, workload_options={**base.workload_options, **opts})
        points.append(Point(bs, dt, th, opts, spec.to_dict()))
    return points


def x_key(batch_sizes: list, lists: dict[str, list]) -> str:
    """The swept dimension a plot puts on its x axis: a whole-number workload option swept over several
    values (``prompt_len``), else the batch size when several, else any other swept option."""
    several = {k: v for k, v in lists.items() if len(v) > 1}
    numeric = [k for k, v in several.items() if all(isinstance(x, int) for x in v)]
    if numeric:
        return numeric[0]
    if len(batch_sizes) > 1 or not several:
        return "batch_size"
    return next(iter(several))


@dataclass
class SweepResult:
    sweep_id: str
    scenario: str
    path: Path | None
    rows: list[dict] = field(default_factory=list)
    plot: Path | None = None
    workload: str = "forward"
    swept: list[str] = field(default_factory=list)  # the swept workload options (their sweep.csv columns)
    x: str = "batch_size"  # the plot's x axis (:func:`x_key`)
    phase_columns: list[str] = field(default_factory=list)  # the workload's phase p50 columns
    columns: list[str] = field(default_factory=lambda: list(COLUMNS))

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "ok"]


def _short_reason(scenario: str, exc: BaseException) -> str:
    """One line: a HarnessError's message, anything else in :func:`harness.errors.forward_error`'s wording."""
    msg = exc.message if isinstance(exc, HarnessError) else forward_error(scenario, exc).message
    return " ".join(msg.split())[:300]


class Progress:
    """``[#####-----] 3/8  bs 4 · float32 · 2 thr · prompt_len 128  12 s elapsed, ETA 20 s`` on stderr.

    On a terminal the line is redrawn in place (``\\r``); otherwise one line per finished point.
    ETA: time per point fitted as ``a + b * size`` over the finished points (:attr:`Point.size`:
    the batch size times each swept whole-number option, e.g. the prompt length).
    """

    def __init__(self, points: list[Point], stream=None, width: int = 20):
        self.points = points
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.done: list[tuple[float, float]] = []
        self.t0 = time.perf_counter()

    def eta(self) -> float | None:
        if not self.done:
            return None
        rest = [p.size for p in self.points[len(self.done):]]
        xs = [b for b, _ in self.done]
        ys = [t for _, t in self.done]
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        if n >= 2 and sxx > 0:
            b = max(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx, 0.0)
            a = max(my - b * mx, 0.0)
            return sum(a + b * x for x in rest)
        return my * len(rest)

    def _bar(self, i: int) -> str:
        n = len(self.points)
        fill = int(round(self.width * i / n)) if n else self.width
        return "[" + "#" * fill + "-" * (self.width - fill) + f"] {i}/{n}"

    @staticmethod
    def _t(s: float | None) -> str:
        if s is None:
            return "?"
        s = int(round(s))
        return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"

    def start(self, i: int, label: str) -> None:
        if self.tty:
            el = time.perf_counter() - self.t0
            self.stream.write(f"\r\033[K{self._bar(i)}  {label}  {self._t(el)} elapsed, ETA {self._t(self.eta())}")
            self.stream.flush()

    def finish(self, i: int, point: Point, label: str, seconds: float, outcome: str) -> None:
        self.done.append((point.size, seconds))
        el = time.perf_counter() - self.t0
        line = f"{self._bar(i + 1)}  {label}: {outcome} ({seconds:.1f} s)  {self._t(el)} elapsed, ETA {self._t(self.eta())}"
        if self.tty:
            self.stream.write(f"\r\033[K{line}")
            if i + 1 == len(self.points):
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _point_row(r, row: dict) -> str:
    """Fill ``row`` from a finished run (the swept options and phase p50s as the run saw them);
    returns the progress outcome."""
    from ..pipeline import workloads

    s = r.summary
    lat = s.get("latency_s") or {}
    contention = s.get("contention") or {}
    row.update({k: s[k] for k in row if k in ("batch_size", "workload", *workloads.declared_options())
                and s.get(k) is not None})
    row.update({k: v for k, v in workloads.phase_p50s(s).items() if k in row})
    row.update(status="ok", run_id=s.get("run_id"), run_dir=str(r.path) if r.path else s.get("path"),
               dtype=s.get("dtype"), threads=s.get("threads"), device=s.get("device"),
               latency_p50_s=lat.get("p50"), latency_p90_s=lat.get("p90"),
               **{k: s.get(k) for k in ("throughput_samples_per_s", "flops", "achieved_flop_per_s", "utilization",
                                        "peak_flop_per_s", "peak_source", "peak_memory_bytes")},
               cpu_share=contention.get("cpu_share"),
               disturbed=None if contention.get("disturbed") is None else int(bool(contention["disturbed"])))
    return f"p50 {_ms(row['latency_p50_s'])}" + (" (machine disturbed)" if row["disturbed"] else "")


def _record(out: Any, sc, row: dict) -> str:
    """One point's result (a run) or its failure recorded in ``row``; returns the progress outcome."""
    if isinstance(out, (HarnessError, RuntimeError, MemoryError)):  # torch.OutOfMemoryError is a RuntimeError
        row.update(status="failed", reason=_short_reason(sc.name, out))
        return f"FAILED: {row['reason'][:80]}"
    if isinstance(out, BaseException):
        raise out
    return _point_row(out, row)


def _job(run: Callable[..., Any] | None) -> Callable[[Point], Any]:
    """What runs one point: its spec through :class:`harness.distributed.executors.SpecJob` (picklable for
    submitit), or the injected ``run`` called as :func:`harness.pipeline.run.run_scenario` is."""
    if run is None:
        from ..distributed.executors import SpecJob

        return SpecJob()
    return lambda pt: run(pt.spec["target"], **_scenario_kwargs(RunSpec.from_dict(pt.spec)))


def _scenario_kwargs(spec: RunSpec) -> dict[str, Any]:
    """``run_scenario`` keywords of a spec (model and workload ones only when set, as callers always did)."""
    out: dict[str, Any] = dict(batch_size=spec.batch_size, dtype=spec.dtype, threads=spec.threads,
                               device=spec.device, warmup=spec.warmup, iters=spec.iters, logdir=spec.logdir,
                               tag=spec.tag)
    if spec.model:
        out["model_options"] = spec.model_options()
    if spec.workload is not None:
        out["workload"] = spec.workload
    if spec.workload_options:
        out["workload_options"] = dict(spec.workload_options)
    return out


def sweep(
    scenario: str,
    batch_sizes: list[int] | None = None,
    *,
    dtypes: list[str | None] | None = None,
    threads: list[int | None] | None = None,
    device: str | None = None,
    warmup: int | None = None,
    iters: int | None = None,
    logdir: str | os.PathLike = "logs",
    tag: str | None = None,
    progress: bool | Any = True,
    run: Callable[..., Any] | None = None,
    plot: bool = True,
    model_options: Any = None,
    executor: str = "local",
    submitit_local: bool = False,
    slurm: dict | None = None,
    workload: str | None = None,
    workload_options: dict | None = None,
    lists: dict[str, list] | None = None,
) -> SweepResult:
    """Run ``scenario`` at every point; see the module doc. Builds the base :class:`RunSpec` from the
    keywords and calls :func:`sweep_spec`. ``lists``: swept workload options (``{"prompt_len": [32, 128]}``).

    ``executor``: ``local`` runs the points here one after another; ``submitit`` submits them
    as a Slurm job array (``submitit_local``: submitit's local executor, the same code path
    without Slurm; :mod:`harness.distributed.executors`)."""
    import dataclasses

    model = dataclasses.asdict(model_options) if dataclasses.is_dataclass(model_options) else dict(model_options or {})
    base = RunSpec(target=str(scenario), workload=workload, workload_options=workload_options or {}, model=model,
                   device=device, warmup=warmup, iters=iters, logdir=str(logdir), tag=tag)
    return sweep_spec(base, batch_sizes, dtypes=dtypes, threads=threads, lists=lists, progress=progress, run=run,
                      plot=plot, executor=executor, submitit_local=submitit_local, slurm=slurm)


def sweep_spec(
    base: RunSpec,
    batch_sizes: list[int] | None = None,
    *,
    dtypes: list[str | None] | None = None,
    threads: list[int | None] | None = None,
    lists: dict[str, list] | None = None,
    progress: bool | Any = True,
    run: Callable[..., Any] | None = None,
    plot: bool = True,
    executor: str = "local",
    submitit_local: bool = False,
    slurm: dict | None = None,
) -> SweepResult:
    """Run ``base`` at every point of batch sizes x dtypes x threads x ``lists`` (each point: ``base`` with
    those fields replaced, :func:`make_points`); a list left out keeps the base's value."""
    import torch

    from ..core import fsio
    from ..pipeline import scenario as scenario_mod
    from ..pipeline.run import check_logdir

    sc = scenario_mod.load(base.target, base.model_options())  # unknown scenario: exit 2 before anything runs
    lists = dict(lists or {})
    cls = check_swept(base.workload or sc.workload, lists, base.workload_options,
                      scenario=None if base.workload else sc.name)
    logdir = check_logdir(Path(base.logdir or "logs"))
    batch_sizes, dtypes, threads = batch_sizes or [None], dtypes or [None], threads or [None]
    points = make_points(base.replace(logdir=str(logdir)), batch_sizes, dtypes, threads, lists)
    sweep_id = fsio.new_run_id()
    out_dir = logdir / sc.name / "sweeps" / sweep_id
    out_dir.mkdir(parents=True, exist_ok=False)
    result = SweepResult(sweep_id=sweep_id, scenario=sc.name, path=out_dir, workload=cls.name, swept=list(lists),
                         x=x_key(batch_sizes, lists), phase_columns=list(cls.history_columns()),
                         columns=COLUMNS + ["workload", *lists, *cls.history_columns()])
    meta = {"schema_version": 1, "sweep_id": sweep_id, "scenario": sc.name,
            "scenario_path": str(sc.path) if sc.path else base.target, "executor": executor,
            "started_at": utc_iso(), "batch_sizes": batch_sizes, "dtypes": dtypes, "threads": threads,
            "device": base.device, "warmup": base.warmup, "iters": base.iters, "tag": base.tag,
            "workload": cls.name, "options": lists, "spec": base.to_dict(), "points": len(points),
            "finished_at": None}
    fsio.atomic_write_json(out_dir / "sweep.json", meta)
    bar = Progress(points, stream=None if progress is True else progress) if progress else None
    from ..distributed.executors import make_executor

    ex = make_executor(executor, folder=out_dir / "submitit", local=submitit_local, **(slurm or {}))
    try:
        _run_points(ex, _job(run), points, sc, result, bar, base.device, torch.get_num_threads())
    finally:
        meta.update(finished_at=utc_iso(), completed_points=len(result.rows), failed_points=len(result.failed))
        fsio.atomic_write_json(out_dir / "sweep.json", meta)
    if plot and any(r["status"] == "ok" for r in result.rows):
        result.plot = _plot(result, cls)
    return result


def _plot(result: SweepResult, cls: type) -> Path:
    """sweep.png: the swept dimension on x; for a workload judged by a phase (generate: decode), that phase too."""
    from ..report.trends import sweep_figure

    phase_col = next((c for c, ph in cls.history_columns().items() if ph == cls.verdict_phase), None)
    return sweep_figure(result.rows, result.path / "sweep.png", result.scenario, x=result.x,
                        x_label=_caption(result.x), word=cls.word, phase_column=phase_col,
                        series=["batch_size", *result.swept])


def _caption(name: str) -> str:
    """What a swept dimension is called in a table or a plot: ``batch size``, ``prompt length``..."""
    from ..pipeline import workloads

    opt = workloads.declared_options().get(name)
    return opt.caption if opt is not None else name.replace("_", " ")


def _label(pt: Point, sc, default_threads: int) -> str:
    """A point in the progress line: ``bs 4 · float32 · 2 thr · prompt length 128``."""
    bits = [f"bs {pt.batch_size or sc.batch_size}", str(pt.dtype or sc.dtype), f"{pt.threads or default_threads} thr"]
    return " · ".join(bits + [f"{_caption(k)} {v}" for k, v in pt.options.items()])


def _run_points(ex, job, points: list[Point], sc, result: SweepResult, bar, device, default_threads: int) -> None:
    """Every point through the executor; sweep.csv rewritten after each one, progress shown."""
    started: dict[int, float] = {}

    def on_progress(i: int, pt: Point, state: str) -> None:
        if state == "started":
            started[i] = time.perf_counter()
            if bar:
                bar.start(i, _label(pt, sc, default_threads))

    for i, (pt, out) in enumerate(ex.map(job, points, progress=on_progress)):
        row: dict[str, Any] = {c: None for c in result.columns}
        row.update(sweep_id=result.sweep_id, point=i, scenario=sc.name, batch_size=pt.batch_size or sc.batch_size,
                   dtype=pt.dtype or sc.dtype, threads=pt.threads or default_threads, device=device or sc.device,
                   workload=result.workload, **pt.options)
        outcome = _record(out, sc, row)
        row["wall_s"] = time.perf_counter() - started.get(i, time.perf_counter())
        result.rows.append(row)
        _write_csv(result.path, result.rows, result.columns)
        if bar:
            bar.finish(i, pt, _label(pt, sc, default_threads), row["wall_s"], outcome)


def _ms(v) -> str:
    from ..core.units import seconds

    return seconds(v) if v is not None else "n/a"


def _write_csv(out_dir: Path, rows: list[dict], columns: list[str] = COLUMNS) -> None:
    """sweep.csv, atomically, in history's cell format (:func:`harness.tracking.history.frame_bytes`)."""
    import pandas as pd

    from ..core.fsio import atomic_write_bytes
    from .history import frame_bytes

    df = pd.DataFrame(rows, columns=columns)
    for c in ("point", "batch_size", "threads", "flops", "peak_memory_bytes", "disturbed"):
        df[c] = pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
    atomic_write_bytes(out_dir / "sweep.csv", frame_bytes(df))
