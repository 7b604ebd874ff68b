"""A side built in this process: the model, its inputs, one timed block at a time.

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
import time
from dataclasses import dataclass

from ...core.samples import median
from ...core.text import short_exc
from ...errors import HarnessError, forward_error
from .sides import SideSpec

WARMUP_MIN_ITERS = 3
WARMUP_MIN_S = 0.2


@dataclass
class BlockTiming:
    """One block of one side: seconds per timed iteration and the block's CPU share."""

    samples: list[float]
    cpu_share: float | None


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far, all its threads (``CLOCK_PROCESS_CPUTIME_ID``)."""
    return time.process_time()


def cpu_share(cpu_s: float, wall_s: float, threads: int) -> float | None:
    """``cpu_s / (wall_s x threads)``: 1.0 when every thread ran the whole time; None for no time."""
    if wall_s <= 0 or not threads:
        return None
    return cpu_s / (wall_s * threads)


def _channels_last(model, call):
    import torch

    model = model.to(memory_format=torch.channels_last)

    def conv(x):
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

    return model, call.map(conv)


def count_side(model, call) -> dict:
    """Params / MACs / FLOPs via harness.count; ``{"error": ...}`` when counting fails."""
    from ...count import count

    try:
        c = count(model, call)
        return {"params": int(c.params), "macs": int(c.macs), "flops": int(c.flops)}
    except Exception as exc:  # noqa: BLE001 - counting is a side note of an A/B, never its failure
        return {"error": short_exc(exc, 120)}


class Prepared:
    """A side built in this process: model, inputs, the timing of one block."""

    def __init__(self, spec: SideSpec, with_counts: bool = True):
        import torch

        from ...pipeline import prepare
        from ...pipeline.measure import synchronizer

        self.spec = spec
        sc = spec.load()
        self.scenario = sc.name
        p = prepare.prepare_scenario(sc, batch_size=spec.batch_size, device=spec.device, dtype=spec.dtype,
                                     threads=spec.threads)
        self.model, self.call = p.model, p.call
        if spec.channels_last:
            self.model, self.call = _channels_last(self.model, self.call)
        self.device, self.batch_size, self.threads = p.device, p.batch_size, p.threads
        self.dtype = prepare.dtype_name(p.dtype)
        self.counts = count_side(self.model, self.call) if with_counts else {}
        self.torch_version = torch.__version__
        self._sync = synchronizer(self.device)

    def describe(self) -> dict:
        return {"scenario": self.scenario, "spec": self.spec.to_json(), "batch_size": self.batch_size,
                "dtype": self.dtype, "device": str(self.device), "threads": self.threads,
                "channels_last": self.spec.channels_last, "counts": self.counts,
                "python": sys.executable, "python_version": sys.version.split()[0], "torch_version": self.torch_version}

    def block(self, k: int, discard: int = 0) -> BlockTiming:
        """``discard`` untimed iterations, then ``k`` timed ones (seconds each) and their CPU share."""
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        sync, clock, model, call = self._sync, time.perf_counter_ns, self.model, self.call
        out = []
        try:
            with torch.inference_mode():
                for _ in range(discard):
                    call(model)
                sync()
                cpu0, wall0 = cpu_seconds(), clock()
                for _ in range(k):
                    t0 = clock()
                    call(model)
                    sync()
                    out.append((clock() - t0) * 1e-9)
                share = cpu_share(cpu_seconds() - cpu0, (clock() - wall0) * 1e-9, self.threads)
        except (HarnessError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise forward_error(self.scenario, exc) from exc
        return BlockTiming(out, share)

    def warmup(self, min_iters: int = WARMUP_MIN_ITERS, min_s: float = WARMUP_MIN_S) -> float:
        """Warm up; return the typical iteration time (median of the second half)."""
        times: list[float] = []
        t0 = time.perf_counter()
        while len(times) < min_iters or time.perf_counter() - t0 < min_s:
            times += self.block(1).samples
            if len(times) > 10_000:
                break
        return median(times[len(times) // 2:])
