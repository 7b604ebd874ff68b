"""Device peaks: what a run's achieved FLOP/s and bytes/s are measured against.

One entry point for the rest of the harness::

    from harness.hardware import peak_for
    peak = peak_for("cuda", "bfloat16")          # table, by torch.cuda.get_device_name
    peak = peak_for("cpu", "float32")            # calibrated if cached, else derived
    summary.update(peak.summary_fields())        # peak_flop_per_s, peak_source, ...

* :mod:`.ceilings` - the :class:`Peak` record; :mod:`.peak` - :func:`peak_for`, which builds it
  (the CPU side in :mod:`.cpu_peak`).
* :mod:`.specs` - published GPU figures (dense, cited), matched by device name.
* :mod:`.formulas` - the peak/bandwidth arithmetic.
* :mod:`.cpu` - CPU model, flags, clock, derived FLOP/cycle (``cpu_info()`` for env.json).
* :mod:`.calibration` - measured CPU peak (``python -m harness calibrate``), cached per CPU
  and thread count; its C loops live in :mod:`.kernels`; :mod:`.cpu_peak` turns it into a Peak.
* :mod:`.cache` - the cache directory (``$HARNESS_CACHE_DIR`` or ``~/.cache/harness``).
* :mod:`.cuda_flags` - the TF32/cuDNN flags (``read_cuda_flags``) and bf16 support by
  compute capability (``bf16_native``, ``cuda_bf16_supported``).

Per-op and per-level ceilings: ``peak.ceiling_for_op("aten::mm")``, ``peak.level_for(nbytes)``,
``peak.bandwidth_for(nbytes)``, ``peak.cache_bytes_per_s``; ``peak.calibrate_hint()``.

Floating-point rates (FLOP/s) and integer rates (int8 TOPS) are never mixed.
Importing this package does not import torch or pandas.
"""
from __future__ import annotations

from .cache import cache_dir
from .calibration import calibrate, calibration_path, load_calibration
from .cpu import cache_levels, cpu_info
from .cuda_flags import bf16_native, cuda_bf16_supported, read_cuda_flags
from .formulas import (
    cache_capacity_bytes,
    cpu_peak_flop_per_s,
    gpu_peak_flop_per_s,
    memory_bandwidth_bytes_per_s,
    ridge_point,
    simd_flop_per_cycle,
)
from .peak import Peak, cuda_tf32_allowed, normalize_dtype, op_class, peak_for
from .specs import FLOP_DTYPES, GPU_SPECS, INT_DTYPES, GpuSpec, match_device

__all__ = [
    "Peak", "peak_for", "cpu_info", "calibrate", "load_calibration", "calibration_path", "cache_dir",
    "match_device", "GPU_SPECS", "GpuSpec", "FLOP_DTYPES", "INT_DTYPES", "normalize_dtype",
    "cuda_tf32_allowed", "device_table", "this_machine_entries",
    "gpu_peak_flop_per_s", "memory_bandwidth_bytes_per_s", "cpu_peak_flop_per_s", "simd_flop_per_cycle",
    "ridge_point", "cache_capacity_bytes", "cache_levels", "read_cuda_flags", "bf16_native", "cuda_bf16_supported",
    "op_class",
]


def this_machine_entries(threads: int | None = None) -> list[dict]:
    """This machine's CPU (and visible CUDA GPUs) in the ``devices --json`` shape."""
    import torch

    threads = threads or torch.get_num_threads()
    peaks = {dt: peak_for("cpu", dt, threads=threads) for dt in ("float64", "float32", "bfloat16", "float16")}
    int8 = peak_for("cpu", "int8", threads=threads)
    f32 = peaks["float32"]
    sources = {dt: p.source for dt, p in peaks.items() if p.flop_per_s is not None}
    entries = [{
        "name": f"{f32.name} (this machine, {threads} threads)",
        "peak_flop_per_s": {dt: p.flop_per_s for dt, p in peaks.items() if p.flop_per_s is not None},
        "peak_int_op_per_s": {"int8": int8.int_op_per_s} if int8.int_op_per_s else {},
        "mem_bandwidth_bytes_per_s": f32.bytes_per_s,
        "peak_source": f32.source,
        "source": f32.source,
        "peak_sources": sources,
        "this_machine": True,
        "device_type": "cpu",
        "notes": {dt: p.note for dt, p in {**peaks, "int8": int8}.items()},
        "cache_bytes_per_s": f32.cache_bytes_per_s,
        "cache_sizes_bytes": f32.cache_sizes_bytes,
        "calibrate_hint": f32.calibrate_hint(),
    }]
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        for i in range(torch.cuda.device_count()):
            name = torch.cuda.get_device_name(i)
            spec = match_device(name)
            row = spec.to_dict() if spec else {
                "name": name, "peak_flop_per_s": {}, "peak_int_op_per_s": {},
                "mem_bandwidth_bytes_per_s": None, "peak_source": "unknown",
                "source": "unknown: not in harness.hardware's table"}
            row.update({"name": f"{name} (this machine, cuda:{i})", "this_machine": True, "device_type": "cuda",
                        "bf16_native": cuda_bf16_supported(i)})
            entries.append(row)
    return entries


def device_table(include_this_machine: bool = True, threads: int | None = None) -> list[dict]:
    """Every known spec (``devices --json``): ``name``, ``peak_flop_per_s`` keyed by dtype
    (float64, float32, tfloat32, bfloat16, float16, float8 - FLOP/s only),
    ``peak_int_op_per_s`` (``{"int8": ...}``: integer ops/s, TOPS - kept out of
    ``peak_flop_per_s`` on purpose), ``mem_bandwidth_bytes_per_s``, ``source`` (the
    citation for table rows; "calibrated"/"derived" for this machine), ``peak_source``."""
    rows = [dict(s.to_dict(), this_machine=False, device_type="cuda") for s in GPU_SPECS]
    if include_this_machine:
        rows = this_machine_entries(threads) + rows
    return rows
