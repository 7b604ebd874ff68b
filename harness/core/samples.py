"""Summaries of timing samples: linear-interpolation quantiles and the latency block."""
from __future__ import annotations

import math
from typing import Iterable


def quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of an ascending list; NaN when empty."""
    if not sorted_vals:
        return math.nan
    pos = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    """The median (linear interpolation, as :func:`quantile`); NaN when empty."""
    return quantile(sorted(values), 0.5)


def sample_stats(samples_s: Iterable[float]) -> dict[str, float | int]:
    """``p50, p90, p99, mean, std, min, max, n`` of the samples, in seconds (std: sample, ddof=1)."""
    vals = sorted(float(s) for s in samples_s)
    n = len(vals)
    mean = sum(vals) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {
        "p50": quantile(vals, 0.50),
        "p90": quantile(vals, 0.90),
        "p99": quantile(vals, 0.99),
        "mean": mean,
        "std": std,
        "min": vals[0] if vals else math.nan,
        "max": vals[-1] if vals else math.nan,
        "n": n,
    }


def rate(work: float | int | None, seconds: float | None) -> float | None:
    """``work / seconds`` (a per-second rate); None when either is unknown or the time is not positive."""
    return work / seconds if work is not None and seconds and seconds > 0 else None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``; None when ``a`` is unknown or ``b`` is unknown or zero (a utilization never divides by 0)."""
    return a / b if a is not None and b else None
