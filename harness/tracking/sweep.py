"""Sweeps: one full run per point (batch size x dtype x threads), a table and a plot.

Each point is :func:`harness.run_scenario` (a complete run directory, a history row).
A point that fails — out of memory, a dtype the device cannot run, a forward that raises —
is recorded with its reason and the sweep goes on. ``sweep.csv`` is rewritten atomically
after every point, so a sweep that is stopped keeps what it measured.
Output: ``LOGDIR/<scenario>/sweeps/<sweep_id>/sweep.csv``, ``sweep.json`` and ``sweep.png``
(drawn by :func:`harness.report.trends.sweep_figure`). Each point also records how busy the
machine was (``cpu_share``, ``disturbed`` from the run's ``summary["contention"]``) and which
peak its utilization is measured against (``peak_flop_per_s``, ``peak_source``: the peak
changes with the thread count).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.text import utc_iso
from ..errors import HarnessError, forward_error

COLUMNS = ["sweep_id", "point", "scenario", "batch_size", "dtype", "threads", "device", "status", "reason", "run_id",
           "run_dir", "latency_p50_s", "latency_p90_s", "throughput_samples_per_s", "flops", "achieved_flop_per_s",
           "utilization", "peak_flop_per_s", "peak_source", "peak_memory_bytes", "cpu_share", "disturbed", "wall_s"]


def parse_ints(text: str, what: str) -> list[int]:
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


@dataclass
class Point:
    batch_size: int
    dtype: str | None
    threads: int | None


@dataclass
class SweepResult:
    sweep_id: str
    scenario: str
    path: Path | None
    rows: list[dict] = field(default_factory=list)
    plot: Path | None = None

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "ok"]


def _short_reason(scenario: str, exc: BaseException) -> str:
    """One line: a HarnessError's message, anything else in :func:`harness.errors.forward_error`'s wording."""
    msg = exc.message if isinstance(exc, HarnessError) else forward_error(scenario, exc).message
    return " ".join(msg.split())[:300]


class Progress:
    """``[#####-----] 3/8  bs 4 · float32 · 2 thr  12 s elapsed, ETA 20 s`` on stderr.

    On a terminal the line is redrawn in place (``\\r``); otherwise one line per finished point.
    ETA: time per point fitted as ``a + b * batch_size`` over the finished points.
    """

    def __init__(self, points: list[Point], stream=None, width: int = 20):
        self.points = points
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.done: list[tuple[int, float]] = []
        self.t0 = time.perf_counter()

    def eta(self) -> float | None:
        if not self.done:
            return None
        rest = [p.batch_size for p in self.points[len(self.done):]]
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
        self.done.append((point.batch_size, seconds))
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
    """Fill ``row`` from a finished run; returns the progress outcome."""
    s = r.summary
    lat = s.get("latency_s") or {}
    contention = s.get("contention") or {}
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


def _job(run: Callable[..., Any] | None, scenario: str, opts: dict) -> Callable[[Point], Any]:
    """What runs one point: a full run (picklable for submitit), or the injected ``run``."""
    if run is None:
        from ..distributed.executors import ScenarioJob

        return ScenarioJob(scenario, opts)
    return lambda pt: run(scenario, batch_size=pt.batch_size, dtype=pt.dtype, threads=pt.threads, **opts)


def sweep(
    scenario: str,
    batch_sizes: list[int],
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
) -> SweepResult:
    """Run ``scenario`` at every (dtype, threads, batch size) point; see the module doc.

    ``executor``: ``local`` runs the points here one after another; ``submitit`` submits them
    as a Slurm job array (``submitit_local``: submitit's local executor, the same code path
    without Slurm; :mod:`harness.distributed.executors`)."""
    import torch

    from ..core import fsio
    from ..pipeline import scenario as scenario_mod
    from ..pipeline.run import check_logdir

    sc = scenario_mod.load(scenario, model_options)  # unknown scenario: exit 2 before anything runs
    logdir = check_logdir(Path(logdir))
    dtypes, threads = dtypes or [None], threads or [None]
    default_threads = torch.get_num_threads()
    points = [Point(bs, dt, th) for dt in dtypes for th in threads for bs in batch_sizes]
    sweep_id = fsio.new_run_id()
    out_dir = logdir / sc.name / "sweeps" / sweep_id
    out_dir.mkdir(parents=True, exist_ok=False)
    result = SweepResult(sweep_id=sweep_id, scenario=sc.name, path=out_dir)
    meta = {"schema_version": 1, "sweep_id": sweep_id, "scenario": sc.name, "scenario_path": str(sc.path) if sc.path else scenario,
            "executor": executor,
            "started_at": utc_iso(), "batch_sizes": batch_sizes, "dtypes": dtypes, "threads": threads,
            "device": device, "warmup": warmup, "iters": iters, "tag": tag, "points": len(points), "finished_at": None}
    fsio.atomic_write_json(out_dir / "sweep.json", meta)
    bar = Progress(points, stream=None if progress is True else progress) if progress else None
    opts = dict(device=device, warmup=warmup, iters=iters, logdir=logdir, tag=tag)
    if model_options is not None:
        opts["model_options"] = model_options
    from ..distributed.executors import make_executor

    ex = make_executor(executor, folder=out_dir / "submitit", local=submitit_local, **(slurm or {}))
    try:
        _run_points(ex, _job(run, scenario, opts), points, sc, result, bar, device, default_threads, out_dir)
    finally:
        meta.update(finished_at=utc_iso(), completed_points=len(result.rows), failed_points=len(result.failed))
        fsio.atomic_write_json(out_dir / "sweep.json", meta)
    if plot and any(r["status"] == "ok" for r in result.rows):
        from ..report.trends import sweep_figure

        result.plot = sweep_figure(result.rows, out_dir / "sweep.png", sc.name)
    return result


def _run_points(ex, job, points: list[Point], sc, result: SweepResult, bar, device, default_threads: int,
                out_dir: Path) -> None:
    """Every point through the executor; sweep.csv rewritten after each one, progress shown."""
    label = lambda pt: f"bs {pt.batch_size} · {pt.dtype or sc.dtype} · {pt.threads or default_threads} thr"  # noqa: E731
    started: dict[int, float] = {}

    def on_progress(i: int, pt: Point, state: str) -> None:
        if state == "started":
            started[i] = time.perf_counter()
            if bar:
                bar.start(i, label(pt))

    for i, (pt, out) in enumerate(ex.map(job, points, progress=on_progress)):
        row: dict[str, Any] = {c: None for c in COLUMNS}
        row.update(sweep_id=result.sweep_id, point=i, scenario=sc.name, batch_size=pt.batch_size,
                   dtype=pt.dtype or sc.dtype, threads=pt.threads or default_threads, device=device or sc.device)
        outcome = _record(out, sc, row)
        row["wall_s"] = time.perf_counter() - started.get(i, time.perf_counter())
        result.rows.append(row)
        _write_csv(out_dir, result.rows)
        if bar:
            bar.finish(i, pt, label(pt), row["wall_s"], outcome)


def _ms(v) -> str:
    from ..core.units import seconds

    return seconds(v) if v is not None else "n/a"


def _write_csv(out_dir: Path, rows: list[dict]) -> None:
    import pandas as pd

    from ..core.fsio import atomic_write_csv

    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("point", "batch_size", "threads", "flops", "peak_memory_bytes", "disturbed"):
        df[c] = pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
    atomic_write_csv(out_dir / "sweep.csv", df)
