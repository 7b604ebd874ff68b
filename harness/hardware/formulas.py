"""Peak-rate arithmetic, kept as small functions so the tests can check it by hand.

These are the textbook ("seed") formulas. They give *theoretical* ceilings: what the
silicon could do if every unit issued every cycle at the quoted clock. Real kernels
reach a fraction of them; that fraction is the utilisation the harness reports.

GPU FP32 (non-tensor-core) peak::

    peak = clock × SMs × FP32 cores per SM × 2        (one FMA = 2 FLOP per core per cycle)
    A100: 1.41 GHz × 108 × 64 × 2 = 19.49 TFLOP/s

DRAM bandwidth::

    bandwidth = memory clock × transfers per clock × bus width / 8
    A100 40GB (HBM2, double data rate): 1,215 MHz × 2 × 5,120 bit / 8 = 1,555.2 GB/s

CPU peak::

    peak = cores × FLOP per cycle per core × clock
    FLOP per cycle per core = FMA units × vector lanes × 2
    AVX-512, 2 FMA units, fp32: 2 × 16 × 2 = 64;  AVX2 (256-bit), 2 FMA units: 2 × 8 × 2 = 32
"""
from __future__ import annotations

FLOP_PER_FMA = 2  # a fused multiply-add is one multiply and one add


def gpu_peak_flop_per_s(clock_hz: float, sms: int, cores_per_sm: int,
                        flop_per_core_per_cycle: int = FLOP_PER_FMA) -> float:
    """Non-tensor-core peak: ``clock × SMs × cores per SM × FLOP per core per cycle``."""
    return float(clock_hz) * sms * cores_per_sm * flop_per_core_per_cycle


def memory_bandwidth_bytes_per_s(mem_clock_hz: float, bus_width_bits: int,
                                 transfers_per_clock: int = 2) -> float:
    """DRAM bandwidth: ``memory clock × transfers per clock (2 = DDR) × bus width / 8``."""
    return float(mem_clock_hz) * transfers_per_clock * bus_width_bits / 8


def simd_flop_per_cycle(vector_bits: int, element_bits: int, fma_units: int) -> int:
    """FLOP per cycle per core of ``fma_units`` FMA pipes of ``vector_bits`` each.

    ``lanes = vector_bits / element_bits``; each lane does one FMA (2 FLOP) per pipe per
    cycle. AVX-512 fp32 with 2 units: 512/32 × 2 × 2 = 64.
    """
    if vector_bits % element_bits:
        raise ValueError("vector width must be a multiple of the element width")
    return (vector_bits // element_bits) * FLOP_PER_FMA * fma_units


def cpu_peak_flop_per_s(cores: int, flop_per_cycle_per_core: float, clock_hz: float) -> float:
    """``cores × FLOP per cycle per core × clock``."""
    return float(cores) * flop_per_cycle_per_core * clock_hz


def ridge_point(flop_per_s: float, bytes_per_s: float) -> float:
    """Arithmetic intensity (FLOP/byte) where the roofline's two ceilings meet."""
    return flop_per_s / bytes_per_s


def cache_capacity_bytes(size_bytes: int, shared_cpus: int | None, smt: int, cores_used: int) -> int:
    """Bytes of one cache level that a run on ``cores_used`` physical cores can hold.

    One instance of the level serves ``shared_cpus / smt`` cores (at least 1; L1/L2 are
    usually per core, L3 per socket or CCX); the run touches
    ``ceil(cores_used / cores per instance)`` instances::

        capacity = size × ceil(cores_used / max(1, shared_cpus // smt))

    2 cores, private 1 MiB L2: 2 MiB; 2 cores sharing a 32 MiB L3: 32 MiB.
    """
    per_instance = max(1, (shared_cpus or 1) // max(1, smt))
    return size_bytes * -(-max(1, cores_used) // per_instance)
