"""Un-profiled timing: warm-up iterations, then every iteration timed on its own.

Timing uses ``time.perf_counter_ns``; on CUDA the device is synchronized before the clock
starts and before it stops, so a sample is the whole iteration (or phase), not its launch.
Each iteration is timed as a whole, and each phase inside it too (a generation has one
``prefill`` and many ``decode`` phases). Samples are kept in full; the headline is the median
(:func:`harness.core.samples.sample_stats`): a shared machine's noise is one-sided.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pandas as pd
import torch

from ..core.calls import split_inputs

from .workloads import Forward, Workload, no_scope

PHASE_SAMPLE_COLUMNS = ["iteration", "phase", "index", "latency_s"]


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


@dataclass
class Timing:
    """``samples_s``: one sample per timed iteration (s). ``phases``: one row per timed phase
    (:data:`PHASE_SAMPLE_COLUMNS`; ``index`` counts a phase's occurrences within its iteration)."""

    samples_s: list[float]
    phases: pd.DataFrame

    def phase_samples(self, phase: str) -> list[float]:
        return list(self.phases.loc[self.phases.phase == phase, "latency_s"])


class _PhaseClock:
    """The measure stage's phase scope: synchronized clock readings around each phase."""

    def __init__(self, sync: Callable[[], None]):
        self.sync, self.iteration = sync, 0
        self.rows: list[tuple[int, str, int, float]] = []  # (iteration, phase, index, seconds)
        self._seen: dict[str, int] = {}

    def start(self, iteration: int) -> None:
        self.iteration, self._seen = iteration, {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        self.sync()
        t0 = time.perf_counter_ns()
        yield
        self.sync()
        t = (time.perf_counter_ns() - t0) * 1e-9
        index = self._seen.get(phase, 0)
        self._seen[phase] = index + 1
        self.rows.append((self.iteration, phase, index, t))


def time_iterations(iteration: Callable[[Any], None], *, warmup: int, iters: int,
                    sync: Callable[[], None]) -> Timing:
    """Run ``warmup`` iterations with no scope, then ``iters`` timed ones (whole and per phase)."""
    for _ in range(warmup):
        iteration(no_scope)
        sync()
    clock = _PhaseClock(sync)
    samples: list[float] = []
    for i in range(iters):
        clock.start(i)
        sync()
        t0 = time.perf_counter_ns()
        iteration(clock)
        sync()
        samples.append((time.perf_counter_ns() - t0) * 1e-9)
    return Timing(samples, pd.DataFrame(clock.rows, columns=PHASE_SAMPLE_COLUMNS))


def time_workload(workload: Workload, prep: Any, *, warmup: int, iters: int) -> Timing:
    """Time ``workload`` on a prepared model; the caller enters ``workload.grad_mode()``."""
    return time_iterations(lambda scope: workload.iteration(prep, scope), warmup=warmup, iters=iters,
                           sync=synchronizer(prep.device))


def time_forward(model: torch.nn.Module, inputs: Any, *, warmup: int, iters: int,
                 device: torch.device | str = "cpu") -> Timing:
    """Forward passes of ``model`` on ``inputs`` (benchmarks use this without a scenario)."""
    call = split_inputs(inputs)
    return time_iterations(lambda scope: Forward().iteration(_Bare(model, call), scope), warmup=warmup,
                           iters=iters, sync=synchronizer(device))


@dataclass
class _Bare:
    model: torch.nn.Module
    call: Any
