"""One timed block of one side: ``k`` iterations of a prepared workload, each timed on its own.

A forward's sample is exactly ``clock; call(model); sync; clock`` (no scope, no wrapper); a
workload of several phases also gets the measure stage's phase clock, one
``(iteration, phase, index, latency_s)`` row per phase occurrence. The block also reports its
**CPU share** (:func:`cpu_share`; :mod:`.inprocess` says why it is read from
``time.process_time()``). Nothing here builds a side: :class:`.inprocess.Prepared` does, and a
compiled run times its own model against itself run eagerly (:mod:`harness.pipeline.versus_eager`).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class BlockTiming:
    """One block of one side: seconds per timed iteration, the block's CPU share and, for a workload
    of several phases, one ``(iteration, phase, index, latency_s)`` row per phase occurrence (else None)."""

    samples: list[float]
    cpu_share: float | None
    phases: list | None = None


class _NoScope:
    """A phase scope that does nothing, without allocating (an iteration of one phase)."""

    def __call__(self, phase: str) -> "_NoScope":
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


NO_SCOPE = _NoScope()


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far, all its threads (``CLOCK_PROCESS_CPUTIME_ID``)."""
    return time.process_time()


def cpu_share(cpu_s: float, wall_s: float, threads: int) -> float | None:
    """``cpu_s / (wall_s x threads)``: 1.0 when every thread ran the whole time; None for no time."""
    if wall_s <= 0 or not threads:
        return None
    return cpu_s / (wall_s * threads)


WARMUP_MIN_ITERS = 3
WARMUP_MIN_S = 0.2


def warm_up(block: Callable[[int, int], BlockTiming], min_iters: int = WARMUP_MIN_ITERS,
            min_s: float = WARMUP_MIN_S) -> float:
    """Run one-iteration blocks until ``min_iters`` and ``min_s`` are both reached (at most 10,000); the
    typical iteration time (median of the second half)."""
    from ...core.samples import median

    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - t0 < min_s:
        times += block(1, 0).samples
        if len(times) > 10_000:
            break
    return median(times[len(times) // 2:])


def _step(workload: Any, prep: Any, scope: Any) -> tuple[Callable[[Any], Any], Any]:
    """One iteration as ``fn(arg)``: a plain forward is ``call(model)`` itself (no scope, no wrapper:
    as fast as before workloads), any other workload ``iteration(prep, scope)``."""
    from ...pipeline.workloads import Forward

    if type(workload).iteration is Forward.iteration:
        return prep.call, prep.model
    return functools.partial(workload.iteration, prep), scope


def timed_block(workload: Any, prep: Any, sync: Callable[[], None], k: int, discard: int = 0, *,
                phased: bool = False) -> BlockTiming:
    """``discard`` untimed iterations, then ``k`` timed ones (seconds each, and per phase when ``phased``)
    and their CPU share, in the workload's grad mode."""
    from ...pipeline.measure import _PhaseClock

    clock = time.perf_counter_ns
    scope = _PhaseClock(sync) if phased else NO_SCOPE
    (untimed, untimed_arg), (step, arg) = _step(workload, prep, NO_SCOPE), _step(workload, prep, scope)
    out = []
    with workload.grad_mode():
        for _ in range(discard):
            untimed(untimed_arg)
        sync()
        cpu0, wall0 = cpu_seconds(), clock()
        for i in range(k):
            if phased:
                scope.start(i)
            t0 = clock()
            step(arg)
            sync()
            out.append((clock() - t0) * 1e-9)
        share = cpu_share(cpu_seconds() - cpu0, (clock() - wall0) * 1e-9, prep.threads)
    return BlockTiming(out, share, scope.rows if phased else None)
