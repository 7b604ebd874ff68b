"""Un-profiled latency: warm-up, then every iteration timed on its own.

Timing uses ``time.perf_counter_ns``; on CUDA the device is synchronized before the
clock starts and before it stops, so a sample is the whole forward, not its launch.
Samples are kept in full; :func:`latency_stats` summarises them (medians, not means,
are the headline: a shared machine's noise is one-sided).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    """Call ``model`` with ``inputs``: a tensor, a tuple/list (positional) or a dict (keywords)."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


@dataclass
class Timing:
    """Latency samples in seconds, warm-up samples apart."""

    samples_s: list[float]
    warmup_s: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, float | int]:
        return latency_stats(self.samples_s)


def _quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), on a sorted list."""
    if not sorted_vals:
        return math.nan
    pos = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def latency_stats(samples_s: list[float]) -> dict[str, float | int]:
    """``p50, p90, p99, mean, std, min, max, n`` of the samples, in seconds (std: sample, ddof=1)."""
    vals = sorted(float(s) for s in samples_s)
    n = len(vals)
    mean = sum(vals) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {
        "p50": _quantile(vals, 0.50),
        "p90": _quantile(vals, 0.90),
        "p99": _quantile(vals, 0.99),
        "mean": mean,
        "std": std,
        "min": vals[0] if vals else math.nan,
        "max": vals[-1] if vals else math.nan,
        "n": n,
    }


def time_forward(
    model: torch.nn.Module,
    inputs: Any,
    *,
    warmup: int,
    iters: int,
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int], None] | None = None,
) -> Timing:
    """Run ``warmup`` untimed-for-the-result iterations, then ``iters`` timed ones.

    Each sample is one synchronized forward. The caller sets eval mode and
    ``torch.inference_mode()``.
    """
    sync = synchronizer(device)
    clock = time.perf_counter_ns
    warm: list[float] = []
    for _ in range(warmup):
        sync()
        t0 = clock()
        call_model(model, inputs)
        sync()
        warm.append((clock() - t0) * 1e-9)
    samples: list[float] = []
    for i in range(iters):
        sync()
        t0 = clock()
        call_model(model, inputs)
        sync()
        samples.append((clock() - t0) * 1e-9)
        if on_iteration is not None:
            on_iteration(i)
    return Timing(samples_s=samples, warmup_s=warm)
