"""A clock for the derived CPU peak where the system tells only the *current* one.

A derived peak is ``cores x FLOP/cycle x clock``. Its clock comes from cpufreq's maximum, else the
model name's nominal GHz (:func:`harness.hardware.cpu._clock`); on a VM that hides cpufreq and
names its CPU "Intel(R) Xeon(R) Processor", only ``/proc/cpuinfo``'s ``cpu MHz`` is left — the
current clock as the hypervisor reports it, here 2.10 GHz while one thread runs at 3.6 GHz — and a
ceiling below what the CPU reaches makes every run "exceed" it. In that case only, the clock is
measured: one thread's chain of dependent register adds (one per cycle: the calibration's own
``harness_add_chain`` kernel, compiled once and cached), 20 runs of about 0.25 ms, the fastest.
Short runs because a shared host takes the core away for milliseconds at a time: measured here
with a neighbour busy, chains of 25 us to 2.5 ms read 3.9-4.0 GHz while 10 ms chains read 1.5-2.2
GHz (wall time includes the time the thread waited). One thread's turbo clock is the right figure
for a *ceiling* (all cores together run at or below it). About 10 ms per process (plus one C
compile per machine, cached); no C compiler: the current clock stays, as before. ``harness calibrate`` measures the sustained all-core clock and replaces
all of this.
"""
from __future__ import annotations

import ctypes
import functools

from .kernels import ADDS_PER_ITER, build_kernel

RUNS, TARGET_S = 20, 0.00025
CURRENT = "/proc/cpuinfo 'cpu MHz'"  # the start of cpu._clock's source text for the current clock


def needs_measuring(clock_source: str | None) -> bool:
    """True when the only clock known is the current one (``cpu MHz``)."""
    return bool(clock_source and clock_source.startswith(CURRENT))


def _hz(fn, iters: int) -> float:
    stamp = (ctypes.c_int64 * 2)()
    fn(iters, stamp)
    return iters * ADDS_PER_ITER / max((stamp[1] - stamp[0]) / 1e9, 1e-12)


@functools.lru_cache(maxsize=1)
def measured_clock_hz() -> float | None:
    """One thread's clock in Hz (the fastest of :data:`RUNS` add chains of ~0.25 ms); None without a C compiler
    or where the chain has no assembly (the kernel then reports -1)."""
    lib, _ = build_kernel()
    if lib is None:
        return None
    probe = (ctypes.c_int64 * 2)()
    if lib.harness_add_chain(1, probe) < 0:
        return None
    hz = max(_hz(lib.harness_add_chain, 1000) for _ in range(3))  # 100,000 adds: a pilot
    iters = max(1000, int(TARGET_S * hz / ADDS_PER_ITER))
    return max(_hz(lib.harness_add_chain, iters) for _ in range(RUNS))
