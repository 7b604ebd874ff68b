"""The micro-benchmarks of the families that measure their change in the run's process (``layout``,
``underfilled``, ``attention``): a fastest-of-rounds timer and a time budget over candidate shapes.

A run is not a benchmark of its findings: each family times its shapes, most important first, for at most
``BUDGET_S`` seconds (the first shape is always timed; no new one starts after the budget).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

ROUNDS = 3
CALLS = 3
BUDGET_S = 0.5
#: a warm-up call longer than this: rounds of one call
LONG_CALL_S = 1e-3


def fastest(fn: Callable[[], Any], device: str, rounds: int = ROUNDS, calls: int = CALLS) -> float:
    """Seconds per call of ``fn``: the fastest of ``rounds`` rounds after one warm-up call (oneDNN and cuDNN
    pick and cache their kernels on the first call), synchronized on CUDA. A round is ``calls`` calls, fewer for
    an op whose warm-up took over :data:`LONG_CALL_S` (one call of a 10 ms convolution is long enough to time:
    the budget then reaches more shapes)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t0 = time.perf_counter()
    fn()
    sync()
    if time.perf_counter() - t0 > LONG_CALL_S:
        calls = 1
    best = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def within_budget(candidates: Iterable[tuple[str, Any]], time_one: Callable[[Any], Any],
                  budget_s: float = BUDGET_S) -> dict:
    """``{key: time_one(item)}`` over ``(key, item)`` candidates in their order, under
    ``torch.inference_mode()``, until ``budget_s`` seconds have passed (the first is always timed)."""
    import torch

    out: dict = {}
    t_end = time.perf_counter() + budget_s
    with torch.inference_mode():
        for key, item in candidates:
            if out and time.perf_counter() > t_end:
                break
            out[key] = time_one(item)
    return out
