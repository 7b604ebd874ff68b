"""The CPU side of :func:`harness.hardware.peak_for`: calibrated where it measured the fastest path.

Rule (README "Device peaks"): a calibrated figure is used for a dtype only when
``harness calibrate`` measured that dtype's fastest path on this CPU (AMX tiles for bf16
where the flags have AMX, ``vdpbf16ps`` with avx512_bf16, vector FMA for fp32/fp64, ...):
then it is what the silicon reaches on the path torch's fastest kernels use, and it
replaces the derived figure, which is kept in ``derived_flop_per_s`` and in the note. When
the fastest path could not be measured, the derived figure stays and the note says
which path and why. Without native bf16/fp16 arithmetic the measured fp32 rate applies.
"""
from __future__ import annotations

from ..core.units import si

from .calibration import load_calibration
from .ceilings import OP_CLASSES, Peak
from .cpu import cpu_info, throughput_from_flags
from .formulas import cpu_peak_flop_per_s
from .quick_clock import measured_clock_hz, needs_measuring


def _memory(cal: dict | None) -> dict:
    """Peak keyword arguments for the bandwidth side: DRAM and the calibrated cache levels."""
    if not cal or not cal.get("bytes_per_s"):
        return {"bytes_per_s": None, "bytes_source": None}
    dram = cal["bytes_per_s"]
    levels = {lv: bw for lv, bw in (cal.get("cache_bytes_per_s") or {}).items() if bw}
    # a ceiling, level by level: a working set that fits a smaller level is never bound below a larger one's
    floor = dram
    for lv in sorted(levels, reverse=True):
        floor = levels[lv] = max(levels[lv], floor)
    sizes = {lv: n for lv, n in (cal.get("cache_sizes_bytes") or {}).items() if lv in levels}
    return {"bytes_per_s": dram, "bytes_source": "calibrated", "cache_bytes_per_s": {**levels, "DRAM": dram},
            "cache_sizes_bytes": sizes}


def _derived(dt: str, info: dict, tp, cal: dict | None, threads: int) -> tuple[float | None, str]:
    """``cores x per-cycle rate x clock`` for ``dt`` (int8: integer ops) and how, or ``(None, why)``."""
    cores = min(threads, info.get("physical_cores") or threads)
    if cal and cal.get("clock_hz"):
        clock, clock_src = cal["clock_hz"], "sustained clock measured by `harness calibrate`"
    else:
        clock, clock_src = info.get("clock_hz"), info.get("clock_source")
        if needs_measuring(clock_src):
            measured = measured_clock_hz()
            if measured:
                clock_src = f"one thread's clock, the fastest of 20 add chains of 0.25 ms; {clock_src} said {si(clock, 'Hz')}"
                clock = max(measured, clock or 0.0)
    per = (tp.int_op_per_cycle if dt == "int8" else tp.flop_per_cycle).get(dt)
    if per is None or clock is None:
        return None, ("FLOP/cycle unknown for this ISA" if per is None else "clock unknown") + f" ({tp.isa})"
    core_note = f"{cores} core{'s' if cores != 1 else ''}" + (
        f" ({threads} threads, SMT siblings share FMA units)" if cores < threads else "")
    note = f"{core_note} x {tp.notes[dt]} x {si(clock, 'Hz')} ({clock_src})"
    if tp.assumptions:
        note += "; assumed: " + "; ".join(tp.assumptions)
    return cpu_peak_flop_per_s(cores, per, clock), note


def _calibrated_note(cal: dict, dt: str, rate: float, derived: float | None, dnote: str) -> str:
    per = (cal.get("int_op_per_cycle_per_thread" if dt == "int8" else "flop_per_cycle_per_thread") or {}).get(dt)
    clock, threads = cal.get("clock_hz"), cal.get("threads")
    unit = "op" if dt == "int8" else "FLOP"
    how = f"{threads} thread{'s' if threads != 1 else ''}" + (
        f" at a measured all-thread clock of {si(clock, 'Hz')}; one thread alone does {per:.1f} {unit}/cycle"
        if per and clock else "")
    note = (f"measured by `harness calibrate` ({cal.get('created')}) on the fastest path "
            f"{cal.get('measured_path', {}).get(dt, '?')}: {how}; cache {cal.get('path')}")
    if derived:
        rel = "above" if rate > derived else "below"
        note += f"; {rel} the derived {si(derived, unit + '/s')} ({dnote})"
    if cal.get("warnings"):
        note += "; the calibration warned that the machine was busy (figures may be low)"
    return note


def _ceilings(flop: float | None, dt: str) -> dict:
    return {cls: (flop, dt) for cls in OP_CLASSES} if flop is not None else {}


def cpu_peak(dt: str, threads: int | None) -> Peak:
    """The CPU :class:`Peak` for ``dt`` at ``threads`` (see the module docstring)."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    info = cpu_info()
    name = str(info.get("model_name"))
    cal = load_calibration(threads, info)
    dt = "float32" if dt == "tfloat32" else dt  # TF32 is a CUDA tensor-core format; CPU fp32 is plain fp32
    tp = throughput_from_flags(info.get("flags", []), info.get("vendor") or "", info.get("family"), info.get("model"))
    mem = _memory(cal)
    base = dict(device_type="cpu", threads=threads, calibration_file=cal.get("path") if cal else None, **mem)
    bw_note = "" if mem["bytes_per_s"] else "; memory bandwidth unknown until `python -m harness calibrate` runs"
    if dt == "float8":
        return Peak(name, dt, None, source="unknown", note="no float8 arithmetic on CPUs" + bw_note, **base)
    derived, dnote = _derived(dt, info, tp, cal, threads)
    measured = (cal.get("int_op_per_s" if dt == "int8" else "flop_per_s") or {}).get(dt) if cal else None
    if measured:
        note = _calibrated_note(cal, dt, measured, derived, dnote)
        if dt == "int8":
            return Peak(name, dt, None, source="calibrated", note="int8 is integer ops/s, not FLOP/s: " + note,
                        int_op_per_s=measured, **base)
        return Peak(name, dt, measured, source="calibrated", note=note, derived_flop_per_s=derived,
                    op_ceilings=_ceilings(measured, dt), **base)
    fp32 = (cal.get("flop_per_s") or {}).get("float32") if cal else None
    if fp32 and tp.paths.get(dt) == "fp32":
        return Peak(name, dt, fp32, source="calibrated", derived_flop_per_s=derived, op_ceilings=_ceilings(fp32, dt),
                    note=f"{tp.notes[dt]}: the measured fp32 rate applies ({cal.get('created')})", **base)
    skipped = f"; not calibrated: {cal['skipped'][dt]}" if cal and dt in cal.get("skipped", {}) else ""
    source = "derived" if derived else "unknown"
    if dt == "int8":
        return Peak(name, dt, None, source=source, note=f"int8 is integer ops/s, not FLOP/s: "
                    f"{dnote if derived else tp.notes.get('int8')}{skipped}{bw_note}", int_op_per_s=derived, **base)
    if derived is None:
        dnote += "; run `python -m harness calibrate`"
    return Peak(name, dt, derived, source=source, note=dnote + skipped + bw_note, derived_flop_per_s=derived,
                op_ceilings=_ceilings(derived, dt), **base)
