"""The per-op dispatch overhead on this machine, measured (G3's unit of cost).

``torch.add`` on two 1-element tensors does no work to speak of: its time is what any op pays to be
called from Python, dispatched, allocate its output and run (launch, on a GPU). It is timed once per
process and device (5 rounds of 200 calls after 100 warm-up calls: ~1,100 calls, a few ms on a CPU)
and the median round's time per call is kept.
"""
from __future__ import annotations

import statistics
import time

ROUNDS = 5
CALLS = 200
WARMUP = 100

_cache: dict[str, float] = {}


def dispatch_overhead_s(device: str = "cpu", grad: bool = False) -> float:
    """Seconds per call of ``torch.add(a, b)`` on 1-element tensors on ``device`` (cached per process).
    ``grad``: with autograd recording (``a`` requires grad), as a training step's forward calls its ops;
    else under ``torch.inference_mode()``, as inference workloads do."""
    key = f"{device}|{grad}"
    if key not in _cache:
        _cache[key] = _measure(str(device), grad)
    return _cache[key]


def _measure(device: str, grad: bool) -> float:
    import contextlib

    import torch

    a = torch.ones(1, device=device, requires_grad=grad)
    b = torch.ones(1, device=device)
    sync = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    with (contextlib.nullcontext() if grad else torch.inference_mode()):
        for _ in range(WARMUP):
            torch.add(a, b)
        sync()
        rounds = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter_ns()
            for _ in range(CALLS):
                torch.add(a, b)
            sync()
            rounds.append((time.perf_counter_ns() - t0) * 1e-9 / CALLS)
    return statistics.median(rounds)
