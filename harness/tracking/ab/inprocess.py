"""A side built in this process: the run's own model and workload, one timed block at a time.

A side is built exactly as ``run`` builds it (:func:`harness.pipeline.run.build`: the scenario,
its workload with its options, the prepared model, channels_last included); the workload's
``setup`` runs once, every block runs ``workload.iteration`` inside ``workload.grad_mode()``,
and ``teardown`` / ``restore`` run when the side is closed. A block returns one sample per
iteration (the whole iteration) and, for a workload of several phases, one row per phase
occurrence (``(iteration, phase, index, latency_s)``, the measure stage's phase clock). A plain
forward is timed without any phase scope: its whole-iteration sample is its forward phase's.

Each block also reports its **CPU share**: CPU time of the process during the timed
iterations over (wall time x threads). The CPU time is the process's user + system time of
all its threads — what ``getrusage(RUSAGE_SELF)`` reports — read through
``time.process_time()`` (``CLOCK_PROCESS_CPUTIME_ID``): the same counters, but exact to the
nanosecond, where ``getrusage`` lags by up to a scheduler tick (measured here on 15 ms busy
loops: getrusage gave shares up to 0.99 where process_time gave at most 0.73 on a loaded
host — ±4 ms of tick error on a 15 ms block). A side that owned its cores the whole block has
a share near 1; a neighbour that took a core for part of the block lowers it. With several
threads, a model that leaves threads idle also lowers it.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from ...core.text import short_exc
from ...errors import HarnessError, forward_error
from .blocks import WARMUP_MIN_ITERS, WARMUP_MIN_S, BlockTiming, cpu_seconds, cpu_share, timed_block, warm_up
from .sides import SideSpec

__all__ = ["BlockTiming", "Prepared", "count_side", "cpu_seconds", "cpu_share"]



def count_side(workload, prep) -> dict:
    """Params / MACs / FLOPs of one iteration of the workload (:meth:`Workload.count` on the prepared
    side: a forward, a generation, a training step); ``{"error": ...}`` when counting fails."""
    try:
        from ...pipeline.compiled import count_eagerly

        with workload.grad_mode():
            c = count_eagerly(workload, prep)
        return {"params": int(c.params), "macs": int(c.macs), "flops": int(c.flops)}
    except Exception as exc:  # noqa: BLE001 - counting is a side note of an A/B, never its failure
        return {"error": short_exc(exc, 120)}


class Prepared:
    """A side built in this process (module doc): its workload set up, the timing of one block.
    Close it (or use it as a context manager) to run the workload's teardown."""

    def __init__(self, side: SideSpec, with_counts: bool = True):
        import torch

        from ...pipeline.measure import synchronizer
        from ...pipeline.run import build

        self.side = side
        sc, self.workload, self.prep = build(side.spec.replace(logdir=None))
        self.scenario, self.torch_version, self._closed = sc.name, torch.__version__, False
        self._sync = synchronizer(self.prep.device)
        try:
            self._guarded(self.workload.setup, self.prep)
            self.counts = count_side(self.workload, self.prep) if with_counts else {}
        except BaseException:
            self.close()
            raise
        self.phases: tuple[str, ...] = tuple(self.workload.phases)  # after setup (train without optimizer: 2)

    @property
    def threads(self) -> int:
        """The torch threads the side runs with (resolved when it was built)."""
        return self.prep.threads

    def describe(self) -> dict:
        """The side as ab.json and the terminal show it: its spec, workload (as asked and as resolved), phases."""
        from ...pipeline.prepare import dtype_name

        wl, prep = self.workload, self.prep
        return {"scenario": self.scenario, "spec": self.side.to_json(), "workload": wl.name,
                "workload_options": dict(wl.options),
                "workload_config": {k: v for k, v in wl.config_extra().items() if k != "workload"},
                "phases": list(self.phases), "verdict_phase": wl.verdict_phase,
                "words": {"iteration": wl.word, **{p: wl.phase_word(p) for p in self.phases}},
                "batch_size": prep.batch_size, "dtype": dtype_name(prep.dtype), "device": str(prep.device),
                "threads": prep.threads, "channels_last": self.side.spec.channels_last, "counts": self.counts,
                "python": sys.executable, "python_version": sys.version.split()[0], "torch_version": self.torch_version}

    def block(self, k: int, discard: int = 0) -> BlockTiming:
        """``discard`` untimed iterations, then ``k`` timed ones (seconds each, and per phase) and their CPU
        share, in the workload's grad mode."""
        import torch

        if torch.get_num_threads() != self.prep.threads:
            torch.set_num_threads(self.prep.threads)
        return self._guarded(self._timed, k, discard)

    def _guarded(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)``; a model that raises becomes the one-line forward_error."""
        try:
            return fn(*args)
        except (HarnessError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise forward_error(self.scenario, exc, where=self.workload.word) from exc

    def _timed(self, k: int, discard: int) -> BlockTiming:
        return timed_block(self.workload, self.prep, self._sync, k, discard, phased=len(self.phases) > 1)

    def warmup(self, min_iters: int = WARMUP_MIN_ITERS, min_s: float = WARMUP_MIN_S) -> float:
        """Warm up; return the typical iteration time (:func:`.blocks.warm_up`)."""
        return warm_up(self.block, min_iters, min_s)

    def close(self) -> None:
        """The workload's teardown and the prepared model's restore (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.workload.teardown(self.prep)
        finally:
            self.prep.restore()

    def __enter__(self) -> "Prepared":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
