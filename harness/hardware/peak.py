"""The one entry point: :func:`peak_for` - the ceilings a run is measured against."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

from ..errors import HarnessError
from ..core.units import si

from . import specs
from .cpu import cpu_info, throughput_from_flags
from .formulas import cpu_peak_flop_per_s

SOURCES = ("table", "derived", "calibrated", "unknown")

_DTYPE_ALIASES = {
    "float64": "float64", "fp64": "float64", "f64": "float64", "double": "float64",
    "float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32", "single": "float32",
    "tfloat32": "tfloat32", "tf32": "tfloat32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
    "float8": "float8", "fp8": "float8", "float8_e4m3fn": "float8", "float8_e5m2": "float8",
    "float8_e4m3fnuz": "float8", "float8_e5m2fnuz": "float8", "e4m3": "float8", "e5m2": "float8",
    "int8": "int8", "qint8": "int8", "quint8": "int8", "uint8": "int8",
}
SHORT = {"float64": "fp64", "float32": "fp32", "tfloat32": "tf32", "bfloat16": "bf16",
         "float16": "fp16", "float8": "fp8", "int8": "int8"}


def normalize_dtype(dtype) -> str:
    """``torch.bfloat16``, ``"bf16"``, ``"torch.bfloat16"`` -> ``"bfloat16"``; unknown -> HarnessError."""
    key = str(dtype).strip().lower().removeprefix("torch.")
    try:
        return _DTYPE_ALIASES[key]
    except KeyError:
        raise HarnessError(f"unknown dtype {dtype!r} for a peak; expected one of "
                           f"{', '.join(sorted(set(_DTYPE_ALIASES.values())))}") from None


@dataclass(frozen=True)
class Peak:
    """The ceilings for one device and dtype.

    ``flop_per_s`` is floating-point operations per second; ``None`` when unknown (never 0).
    For int8, ``flop_per_s`` is ``None`` and ``int_op_per_s`` holds the *integer* ops/s
    (TOPS): an int8 multiply-add is not a FLOP. ``dtype`` is the rate that applies: a
    float32 CUDA run with TF32 allowed gets ``"tfloat32"``. ``source`` says where
    ``flop_per_s`` comes from: ``table`` (published spec), ``derived`` (formula from
    /proc/cpuinfo), ``calibrated`` (measured by ``harness calibrate``) or ``unknown``;
    ``bytes_source`` likewise for ``bytes_per_s``. ``note`` says how, in words.
    """

    name: str
    dtype: str
    flop_per_s: float | None
    bytes_per_s: float | None
    source: str
    note: str
    device_type: str = "cpu"
    int_op_per_s: float | None = None
    bytes_source: str | None = None

    @property
    def known(self) -> bool:
        return self.flop_per_s is not None

    @property
    def ridge_flop_per_byte(self) -> float | None:
        if self.flop_per_s and self.bytes_per_s:
            return self.flop_per_s / self.bytes_per_s
        return None

    def compute_label(self) -> str:
        """``"peak 157 GFLOP/s fp32 (calibrated)"`` or ``"peak unknown"``."""
        if self.flop_per_s is None:
            return "peak unknown"
        return f"peak {si(self.flop_per_s, 'FLOP/s')} {SHORT.get(self.dtype, self.dtype)} ({self.source})"

    def bandwidth_label(self) -> str:
        if self.bytes_per_s is None:
            return "memory bandwidth unknown"
        return f"{si(self.bytes_per_s, 'B/s')} memory ({self.bytes_source or self.source})"

    def summary_fields(self) -> dict:
        """The summary.json fields: ``peak_flop_per_s``, ``peak_source``, ``mem_bandwidth_bytes_per_s``
        plus ``peak_dtype``, ``peak_device``, ``peak_note`` (and ``peak_int_op_per_s`` for int8)."""
        out = {
            "peak_flop_per_s": self.flop_per_s,
            "peak_source": self.source,
            "mem_bandwidth_bytes_per_s": self.bytes_per_s,
            "peak_dtype": self.dtype,
            "peak_device": self.name,
            "peak_note": self.note,
        }
        if self.int_op_per_s is not None:
            out["peak_int_op_per_s"] = self.int_op_per_s
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def cuda_tf32_allowed() -> bool:
    """Whether float32 CUDA matmuls may use TF32 tensor cores in this process."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = torch.backends.cuda.matmul
        if getattr(m, "fp32_precision", None) == "tf32":
            return True
        try:
            if m.allow_tf32:
                return True
        except Exception:  # pragma: no cover - API removed in a future torch
            pass
        return torch.get_float32_matmul_precision() in ("high", "medium")


def _device_type(device_type) -> str:
    return str(device_type).split(":")[0].strip().lower()


def peak_for(device_type: str, dtype: str, *, device_name: str | None = None,
             threads: int | None = None, allow_tf32: bool | None = None) -> Peak:
    """Peak FLOP/s (or int8 ops/s) and memory bytes/s for ``device_type`` ("cpu", "cuda",
    "cuda:1", a ``torch.device``) and ``dtype`` (float32, tfloat32, bfloat16, float16,
    float8, float64, int8, or aliases like ``torch.bfloat16`` / ``"bf16"``).

    CUDA: the table row matching ``device_name`` (default: the current device's name);
    float32 uses the TF32 rate when ``allow_tf32`` (default: read from torch) is true.
    CPU: the cached ``harness calibrate`` result for this CPU and ``threads`` (default
    ``torch.get_num_threads()``) when present, else derived from /proc/cpuinfo.
    Anything unknown comes back with ``source="unknown"`` and ``flop_per_s=None``.
    """
    dev = _device_type(device_type)
    dt = normalize_dtype(dtype)
    if dev == "cuda":
        return _cuda_peak(dt, device_name, allow_tf32)
    if dev == "cpu":
        return _cpu_peak(dt, threads)
    return Peak(device_name or dev, dt, None, None, "unknown",
                f"no peak figures for device type {dev!r} (known: cpu, cuda)", device_type=dev)


def _cuda_peak(dt: str, device_name: str | None, allow_tf32: bool | None) -> Peak:
    if device_name is None:
        import torch

        if not torch.cuda.is_available():
            return Peak("cuda", dt, None, None, "unknown", "no CUDA device visible", device_type="cuda")
        device_name = torch.cuda.get_device_name(torch.cuda.current_device())
    spec = specs.match_device(device_name)
    if spec is None:
        return Peak(device_name, dt, None, None, "unknown",
                    f"{device_name!r} is not in harness.hardware's table (known: "
                    f"{', '.join(s.name for s in specs.GPU_SPECS)})", device_type="cuda")
    notes = [f"{spec.name} (matched {device_name!r}), dense figure; {spec.source}"]
    if "MIG" in device_name.upper():
        notes.append("MIG slice: figures are for the whole GPU, the slice has a fraction of them")
    key = dt
    if dt == "tfloat32":
        key = "tfloat32"
    elif dt == "float32":
        if allow_tf32 is None:
            allow_tf32 = cuda_tf32_allowed()
        if allow_tf32 and "tfloat32" in spec.flop_per_s:
            key = "tfloat32"
            notes.insert(0, f"float32 matmuls may use TF32 tensor cores (allowed); other float32 ops run at "
                            f"{si(spec.flop_per_s.get('float32'), 'FLOP/s')}")
    if spec.notes and (key in spec.notes or key not in spec.flop_per_s):
        notes.append(spec.notes)
    note = "; ".join(notes)
    if key == "int8":
        ops = spec.int_op_per_s.get("int8")
        return Peak(spec.name, "int8", None, spec.bytes_per_s, "table" if ops else "unknown",
                    ("int8 figure is integer ops/s (TOPS), not FLOP/s; " if ops else "no int8 figure; ") + note,
                    device_type="cuda", int_op_per_s=ops, bytes_source="table")
    flop = spec.flop_per_s.get(key)
    if flop is None:
        return Peak(spec.name, key, None, spec.bytes_per_s, "unknown", f"no {key} figure for {spec.name}; " + note,
                    device_type="cuda", bytes_source="table")
    return Peak(spec.name, key, flop, spec.bytes_per_s, "table", note, device_type="cuda", bytes_source="table")


def _cpu_peak(dt: str, threads: int | None) -> Peak:
    from .calibration import load_calibration

    if threads is None:
        import torch

        threads = torch.get_num_threads()
    info = cpu_info()
    name = str(info.get("model_name"))
    cal = load_calibration(threads, info)
    if dt == "tfloat32":
        dt = "float32"  # TF32 is a CUDA tensor-core format; CPU float32 matmuls are plain fp32
    bytes_per_s = cal.get("bytes_per_s") if cal else None
    bytes_source = "calibrated" if bytes_per_s else None
    bw_note = "" if bytes_per_s else "; memory bandwidth unknown until `python -m harness calibrate` runs"

    if cal and dt in cal.get("flop_per_s", {}):
        flop = cal["flop_per_s"][dt]
        clock = cal.get("clock_hz")
        per = cal.get("flop_per_cycle_per_thread", {}).get(dt)
        busy = cal.get("concurrent_threads", threads)
        how = (f"{busy} thread{'s' if busy != 1 else ''} x {per:.1f} FLOP/cycle x {si(clock, 'Hz')} (measured clock)"
               if per and clock else f"{threads} threads")
        warned = "; the calibration warned that the machine was busy (figures may be low)" if cal.get(
            "warnings") else ""
        return Peak(name, dt, flop, bytes_per_s, "calibrated",
                    f"measured by `harness calibrate` ({cal.get('created')}): FMA-bound loop, {how}; "
                    f"cache {cal.get('path')}{warned}", device_type="cpu", bytes_source=bytes_source)

    tp = throughput_from_flags(info.get("flags", []), info.get("vendor") or "", info.get("family"),
                               info.get("model"))
    native_same_as_fp32 = dt in ("bfloat16", "float16") and tp.flop_per_cycle.get(dt) == tp.flop_per_cycle.get(
        "float32")
    if cal and native_same_as_fp32 and "float32" in cal.get("flop_per_s", {}):
        return Peak(name, dt, cal["flop_per_s"]["float32"], bytes_per_s, "calibrated",
                    f"{tp.notes[dt]}: the measured fp32 rate applies ({cal.get('created')})",
                    device_type="cpu", bytes_source=bytes_source)

    cores = min(threads, info.get("physical_cores") or threads)
    if cal and cal.get("clock_hz"):
        clock, clock_src = cal["clock_hz"], "sustained clock measured by `harness calibrate`"
    else:
        clock, clock_src = info.get("clock_hz"), info.get("clock_source")
    core_note = f"{cores} core{'s' if cores != 1 else ''}" + (f" ({threads} threads, SMT siblings share FMA units)" if cores < threads else "")
    assumptions = "; ".join(tp.assumptions)

    if dt == "int8":
        per = tp.int_op_per_cycle.get("int8")
        ops = cpu_peak_flop_per_s(cores, per, clock) if per and clock else None
        return Peak(name, "int8", None, bytes_per_s, "derived" if ops else "unknown",
                    f"int8 is integer ops/s, not FLOP/s: {tp.notes.get('int8')}"
                    + (f"; {core_note} x {si(clock, 'Hz')} ({clock_src})" if ops else "") + bw_note,
                    device_type="cpu", int_op_per_s=ops, bytes_source=bytes_source)
    if dt == "float8":
        return Peak(name, dt, None, bytes_per_s, "unknown", "no float8 arithmetic on CPUs" + bw_note,
                    device_type="cpu", bytes_source=bytes_source)
    per = tp.flop_per_cycle.get(dt)
    if per is None or clock is None:
        why = "FLOP/cycle unknown for this ISA" if per is None else "clock unknown"
        return Peak(name, dt, None, bytes_per_s, "unknown", f"{why} ({tp.isa}); run `python -m harness calibrate`"
                    + bw_note, device_type="cpu", bytes_source=bytes_source)
    flop = cpu_peak_flop_per_s(cores, per, clock)
    note = f"{core_note} x {tp.notes[dt]} x {si(clock, 'Hz')} ({clock_src})"
    if assumptions:
        note += f"; assumed: {assumptions}"
    if cal:
        note += "; not measured by the calibration"
    return Peak(name, dt, flop, bytes_per_s, "derived", note + bw_note, device_type="cpu", bytes_source=bytes_source)
