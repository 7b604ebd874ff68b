"""How a sweep runs its points: here, one after another, or as a Slurm job array via submitit.

One small interface (:class:`Executor`): ``map(fn, points, progress=None)`` yields
``(point, result)`` in the order of ``points``, where ``result`` is what ``fn(point)``
returned or the exception it raised (the original exception object: a ``HarnessError``
keeps its one-line message). ``progress(index, point, state)`` is called with ``"started"``
when a point begins (local) or is waited for (submitit), then ``"finished"`` or ``"failed"``.

- ``make_executor("local")``: ``fn(point)`` in this process, one point after another.
- ``make_executor("submitit", folder=..., slurm_partition=..., slurm_gpus_per_node=...,
  slurm_time_min=...)``: ``submitit.AutoExecutor(cluster="slurm")``; the points are one
  ``map_array`` call, i.e. one Slurm job array (``parallel`` caps how many run at once:
  ``slurm_array_parallelism``). ``fn`` and the points are pickled with cloudpickle, so
  ``fn`` must be importable on the nodes (same Python, same ``harness``).
- ``make_executor("submitit", local=True, ...)``: the same code path through submitit's
  ``LocalExecutor`` (``AutoExecutor(cluster="local")``), for CI without Slurm; local jobs run
  ``parallel`` at a time (default 1: points measured on one machine must not overlap).
"""
from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from ..core.text import short_exc
from ..errors import HarnessError

ProgressFn = Callable[[int, Any, str], None]
KINDS = ("local", "submitit")


class Executor(Protocol):
    kind: str

    def map(self, fn: Callable[[Any], Any], points: Iterable[Any],
            progress: ProgressFn | None = None) -> Iterator[tuple[Any, Any]]: ...


def _state(out: Any) -> str:
    return "failed" if isinstance(out, BaseException) else "finished"


class LocalExecutor:
    """Every point in this process, in order (what ``sweep`` always did)."""

    kind = "local"

    def map(self, fn, points, progress=None):
        for i, point in enumerate(points):
            if progress:
                progress(i, point, "started")
            try:
                out = fn(point)
            except Exception as exc:  # KeyboardInterrupt stops the sweep
                out = exc
            if progress:
                progress(i, point, _state(out))
            yield point, out


def _guarded(fn, point) -> tuple[str, Any]:
    """Runs on the node: the result, or the exception itself when it pickles (else its one line)."""
    try:
        return "ok", fn(point)
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
            return "error", exc
        except Exception:
            return "error", RuntimeError(short_exc(exc))


def _outcome(job) -> Any:
    from submitit.core.utils import UncompletedJobError

    try:
        status, value = job.result()
    except UncompletedJobError as exc:  # killed, timed out, node lost, or a crash outside fn
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        return RuntimeError(f"submitit job {job.job_id} did not finish: {(lines[-1] if lines else 'no message')[:300]}")
    return value


@dataclass
class SubmititExecutor:
    """Points as one submitit job array (Slurm), or submitit's LocalExecutor with ``local=True``."""

    folder: Path
    local: bool = False
    parallel: int | None = None
    parameters: dict = field(default_factory=dict)
    kind: str = "submitit"

    def __post_init__(self):
        try:
            import submitit
        except ImportError:
            raise HarnessError("--executor submitit needs submitit: pip install 'harness[cluster]'") from None
        if not self.local and shutil.which("sbatch") is None:
            raise HarnessError("--executor submitit found no Slurm here (no sbatch); "
                               "add --submitit-local to run the same path on this machine")
        if self.local and self.parallel is None:
            self.parallel = 1
        self.executor = submitit.AutoExecutor(folder=str(self.folder), cluster="local" if self.local else "slurm")
        params = dict(self.parameters)
        if self.parallel and not self.local:
            params["slurm_array_parallelism"] = self.parallel
        self.executor.update_parameters(**params)

    def map(self, fn, points, progress=None):
        points = list(points)
        size = (self.parallel if self.local else None) or max(len(points), 1)
        for start in range(0, len(points), size):
            chunk = points[start:start + size]
            jobs = self.executor.map_array(_guarded, [fn] * len(chunk), chunk)
            for i, (point, job) in enumerate(zip(chunk, jobs), start):
                if progress:
                    progress(i, point, "started")
                out = _outcome(job)
                if progress:
                    progress(i, point, _state(out))
                yield point, out


def make_executor(kind: str = "local", *, folder: str | Path | None = None, local: bool = False,
                  parallel: int | None = None, slurm_partition: str | None = None,
                  slurm_gpus_per_node: int | None = None, slurm_time_min: int | None = None,
                  **submitit_parameters: Any) -> Executor:
    """An executor for ``sweep``: ``local`` or ``submitit`` (Slurm; ``local=True``: submitit's LocalExecutor).

    ``folder`` holds submitit's pickles and logs (e.g. ``LOGDIR/<scenario>/sweeps/<id>/submitit``);
    ``slurm_time_min`` is each job's time limit (default 60); other keyword arguments go to
    ``AutoExecutor.update_parameters`` as they are (e.g. ``slurm_account``, ``cpus_per_task``).
    """
    name = (kind or "local").strip().lower()
    if name == "local":
        return LocalExecutor()
    if name != "submitit":
        raise HarnessError(f"--executor {kind!r}: use one of {', '.join(KINDS)}")
    params: dict[str, Any] = {"timeout_min": slurm_time_min or 60, "nodes": 1, "tasks_per_node": 1,
                              **submitit_parameters}
    if slurm_gpus_per_node is not None:
        params["gpus_per_node"] = slurm_gpus_per_node
    if slurm_partition is not None:
        params["slurm_partition"] = slurm_partition
    return SubmititExecutor(Path(folder or "logs/submitit"), local=local, parallel=parallel, parameters=params)


@dataclass
class PointResult:
    """What a point's job sends back: the run's summary and directory (``Run`` minus its tables)."""

    summary: dict
    path: Path | None


@dataclass
class SpecJob:
    """``fn`` for a sweep: one complete run of a point's spec (``point.spec``: a
    :class:`harness.pipeline.spec.RunSpec` as a dict, so the model and workload options travel
    with the point to a remote node); picklable for submitit."""

    def __call__(self, point: Any) -> PointResult:
        from ..pipeline.run import run_spec
        from ..pipeline.spec import RunSpec

        r = run_spec(RunSpec.from_dict(point.spec))
        return PointResult(summary=r.summary, path=r.path)
