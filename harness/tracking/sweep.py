"""Sweeps: one full run per point (batch size x dtype x threads), a table and a plot.

Each point is :func:`harness.run_scenario` (a complete run directory, a history row).
A point that fails — out of memory, a dtype the device cannot run, a forward that raises —
is recorded with its reason and the sweep goes on. ``sweep.csv`` is rewritten atomically
after every point, so a sweep that is stopped keeps what it measured.
Output: ``LOGDIR/<scenario>/sweeps/<sweep_id>/sweep.csv``, ``sweep.json`` and ``sweep.png``.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import HarnessError

COLUMNS = ["sweep_id", "point", "scenario", "batch_size", "dtype", "threads", "device", "status", "reason", "run_id",
           "run_dir", "latency_p50_s", "latency_p90_s", "throughput_samples_per_s", "flops", "achieved_flop_per_s",
           "utilization", "peak_memory_bytes", "wall_s"]


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
    from ..pipeline.prepare import DTYPE_ALIASES, DTYPES

    out: list[str | None] = []
    for part in str(text).split(","):
        name = part.strip().lower()
        if not name:
            continue
        name = DTYPE_ALIASES.get(name, name)
        if name not in DTYPES:
            raise HarnessError(f"--dtypes {text!r}: unknown dtype {part.strip()!r}; use {', '.join(DTYPES)}")
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


def _short_reason(exc: BaseException) -> str:
    import torch

    if isinstance(exc, HarnessError):
        msg = exc.message
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        msg = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in msg.lower():
        msg = msg if msg.lower().startswith("out of memory") else f"out of memory: {msg}"
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
) -> SweepResult:
    """Run ``scenario`` at every (dtype, threads, batch size) point; see the module doc."""
    from ..core import fsio
    from ..pipeline import scenario as scenario_mod
    from ..pipeline.run import check_logdir

    sc = scenario_mod.load(scenario)  # unknown scenario: exit 2 before anything runs
    logdir = check_logdir(Path(logdir))
    if run is None:
        from ..pipeline.run import run_scenario as run
    dtypes = dtypes or [None]
    threads = threads or [None]
    import torch

    default_threads = torch.get_num_threads()
    points = [Point(bs, dt, th) for dt in dtypes for th in threads for bs in batch_sizes]
    started = datetime.now(timezone.utc)
    sweep_id = fsio.new_run_id(started)
    out_dir = logdir / sc.name / "sweeps" / sweep_id
    out_dir.mkdir(parents=True, exist_ok=False)
    result = SweepResult(sweep_id=sweep_id, scenario=sc.name, path=out_dir)
    meta = {"schema_version": 1, "sweep_id": sweep_id, "scenario": sc.name, "scenario_path": str(sc.path),
            "started_at": started.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "batch_sizes": batch_sizes, "dtypes": dtypes, "threads": threads, "device": device, "warmup": warmup,
            "iters": iters, "tag": tag, "points": len(points), "finished_at": None}
    fsio.atomic_write_json(out_dir / "sweep.json", meta)
    bar = Progress(points, stream=None if progress is True else progress) if progress else None
    try:
        for i, pt in enumerate(points):
            label = f"bs {pt.batch_size} · {pt.dtype or sc.dtype} · {pt.threads or default_threads} thr"
            if bar:
                bar.start(i, label)
            t0 = time.perf_counter()
            row: dict[str, Any] = {c: None for c in COLUMNS}
            row.update(sweep_id=sweep_id, point=i, scenario=sc.name, batch_size=pt.batch_size,
                       dtype=pt.dtype or sc.dtype, threads=pt.threads or default_threads, device=device or sc.device)
            try:
                r = run(str(sc.path), batch_size=pt.batch_size, dtype=pt.dtype, threads=pt.threads, device=device,
                        warmup=warmup, iters=iters, logdir=logdir, tag=tag)
                s = r.summary
                lat = s.get("latency_s") or {}
                row.update(status="ok", run_id=s.get("run_id"), run_dir=str(r.path) if r.path else s.get("path"),
                           dtype=s.get("dtype"), threads=s.get("threads"), device=s.get("device"),
                           latency_p50_s=lat.get("p50"), latency_p90_s=lat.get("p90"),
                           throughput_samples_per_s=s.get("throughput_samples_per_s"), flops=s.get("flops"),
                           achieved_flop_per_s=s.get("achieved_flop_per_s"), utilization=s.get("utilization"),
                           peak_memory_bytes=s.get("peak_memory_bytes"))
                outcome = f"p50 {_ms(row['latency_p50_s'])}"
            except KeyboardInterrupt:
                raise
            except (HarnessError, RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
                row.update(status="failed", reason=_short_reason(exc))
                outcome = f"FAILED: {row['reason'][:80]}"
            row["wall_s"] = time.perf_counter() - t0
            result.rows.append(row)
            _write_csv(out_dir, result.rows)
            if bar:
                bar.finish(i, pt, label, row["wall_s"], outcome)
    finally:
        meta["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        meta["completed_points"] = len(result.rows)
        meta["failed_points"] = len(result.failed)
        fsio.atomic_write_json(out_dir / "sweep.json", meta)
    if plot and any(r["status"] == "ok" for r in result.rows):
        result.plot = plot_sweep(result.rows, out_dir / "sweep.png", sc.name)
    return result


def _ms(v) -> str:
    from ..core.units import seconds

    return seconds(v) if v is not None else "n/a"


def _write_csv(out_dir: Path, rows: list[dict]) -> None:
    import pandas as pd

    from ..core.fsio import atomic_write_csv

    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("point", "batch_size", "threads", "flops", "peak_memory_bytes"):
        df[c] = pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
    atomic_write_csv(out_dir / "sweep.csv", df)


def plot_sweep(rows: list[dict], out: Path, scenario: str) -> Path:
    """Latency p50 and achieved FLOP/s against batch size, one line per (dtype, threads); failures marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    from ..core.fsio import atomic_write_bytes

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["threads"]), []).append(r)
    cmap = plt.get_cmap("tab10")
    all_bs = sorted({r["batch_size"] for r in rows})
    failed_bs: set = set()
    for i, ((dt, th), rs) in enumerate(groups.items()):
        color = cmap(i % 10)
        th = int(th) if th is not None else None
        label = f"{dt}, {th if th is not None else 'default'} thread{'s' if th != 1 else ''}"
        ok = sorted((r for r in rs if r["status"] == "ok"), key=lambda r: r["batch_size"])
        if ok:
            x = [r["batch_size"] for r in ok]
            ax1.plot(x, [r["latency_p50_s"] * 1e3 for r in ok], marker="o", color=color, label=label)
            ax2.plot(x, [(r["achieved_flop_per_s"] or math.nan) / 1e9 for r in ok], marker="o", color=color, label=label)
        for r in rs:
            if r["status"] != "ok":
                failed_bs.add(r["batch_size"])
    ax1.set_title(f"{scenario}: latency (p50) per forward")
    ax1.set_ylabel("latency p50 (ms)")
    ax2.set_title(f"{scenario}: achieved FLOP/s")
    ax2.set_ylabel("achieved GFLOP/s")
    for ax in (ax1, ax2):
        ax.set_xlabel("batch size")
        if len(all_bs) > 1 and min(all_bs) > 0:
            ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(all_bs))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(b) for b in all_bs])
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax in (ax1, ax2):
        for bs in sorted(failed_bs):
            ax.axvline(bs, color="crimson", alpha=0.4, linestyle=":", linewidth=1.2)
            ax.plot([bs], [0], marker="x", color="crimson", markersize=9, mew=2, clip_on=False, zorder=5)
            ax.annotate("failed", (bs, 0), textcoords="offset points", xytext=(0, 9), ha="center", color="crimson",
                        fontsize=8)
    handles, labels = ax1.get_legend_handles_labels()
    if failed_bs:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="x", color="crimson", linestyle="", markersize=9, mew=2))
        labels.append("a point failed there (reason in sweep.csv)")
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())
