"""The one entry point: :func:`peak_for` - the ceilings a run is measured against."""
from __future__ import annotations

from ..core.dtypes import SHORT
from ..core.units import si

from . import specs
from .ceilings import LEVELS, MATMUL_OPS, OP_CLASSES, SOURCES, Peak, normalize_dtype, op_class

__all__ = ["LEVELS", "MATMUL_OPS", "OP_CLASSES", "SOURCES", "Peak", "cuda_tf32_allowed", "normalize_dtype",
           "op_class", "peak_for"]


def cuda_tf32_allowed() -> bool:
    """Whether float32 CUDA matmuls may use TF32 tensor cores in this process
    (:func:`harness.hardware.cuda_flags.read_cuda_flags`'s ``tf32_matmul``)."""
    from .cuda_flags import read_cuda_flags

    return read_cuda_flags()["tf32_matmul"]


def _device_type(device_type) -> str:
    return str(device_type).split(":")[0].strip().lower()


def peak_for(device_type: str, dtype: str, *, device_name: str | None = None, threads: int | None = None,
             allow_tf32: bool | None = None, cuda_flags: dict | None = None) -> Peak:
    """Peak FLOP/s (or int8 ops/s) and memory bytes/s for ``device_type`` ("cpu", "cuda",
    "cuda:1", a ``torch.device``) and ``dtype`` (float32, tfloat32, bfloat16, float16,
    float8, float64, int8, or aliases like ``torch.bfloat16`` / ``"bf16"``).

    CUDA: the table row matching ``device_name`` (default: the current device's name). A
    float32 run's matmul and conv ceilings follow ``cuda_flags`` (a
    :func:`~harness.hardware.cuda_flags.read_cuda_flags` dict: ``tf32_matmul``, ``tf32_conv``;
    default: read now); ``allow_tf32`` (legacy) overrides both. CPU: the cached ``harness
    calibrate`` result for this CPU and ``threads`` (default ``torch.get_num_threads()``) when
    it measured the dtype's fastest path, else derived from /proc/cpuinfo.
    Anything unknown comes back with ``source="unknown"`` and ``flop_per_s=None``.
    """
    dev = _device_type(device_type)
    dt = normalize_dtype(dtype)
    if dev == "cuda":
        return _cuda_peak(dt, device_name, _tf32_flags(dt, allow_tf32, cuda_flags))
    if dev == "cpu":
        from .cpu_peak import cpu_peak

        return cpu_peak(dt, threads)
    return Peak(device_name or dev, dt, None, None, "unknown",
                f"no peak figures for device type {dev!r} (known: cpu, cuda)", device_type=dev)


def _tf32_flags(dt: str, allow_tf32: bool | None, cuda_flags: dict | None) -> dict[str, bool]:
    """``{"matmul": bool, "conv": bool}``: which op classes of a float32 run may use TF32."""
    if dt != "float32":
        return {"matmul": False, "conv": False}
    if allow_tf32 is not None:
        return {"matmul": bool(allow_tf32), "conv": bool(allow_tf32)}
    if cuda_flags is None:
        from .cuda_flags import read_cuda_flags

        cuda_flags = read_cuda_flags()
    return {"matmul": bool(cuda_flags.get("tf32_matmul")), "conv": bool(cuda_flags.get("tf32_conv"))}


def _unknown_cuda(dt: str, name: str, note: str, bytes_per_s: float | None = None) -> Peak:
    return Peak(name, dt, None, bytes_per_s, "unknown", note, device_type="cuda",
                bytes_source="table" if bytes_per_s else None,
                cache_bytes_per_s={"DRAM": bytes_per_s} if bytes_per_s else {})


def _cuda_peak(dt: str, device_name: str | None, tf32: dict[str, bool]) -> Peak:
    if device_name is None:
        import torch

        if not torch.cuda.is_available():
            return _unknown_cuda(dt, "cuda", "no CUDA device visible")
        device_name = torch.cuda.get_device_name(torch.cuda.current_device())
    spec = specs.match_device(device_name)
    if spec is None:
        return _unknown_cuda(dt, device_name, f"{device_name!r} is not in harness.hardware's table (known: "
                                              f"{', '.join(s.name for s in specs.GPU_SPECS)})")
    notes = [f"{spec.name} (matched {device_name!r}), dense figure; {spec.source}"]
    if "MIG" in device_name.upper():
        notes.append("MIG slice: figures are for the whole GPU, the slice has a fraction of them")
    ceilings = _cuda_ceilings(spec, dt, tf32)
    key = max(ceilings.values(), key=lambda c: c[0] or 0)[1] if ceilings else dt
    if dt == "float32" and "tfloat32" in spec.flop_per_s:
        notes.insert(0, "ceilings: " + ", ".join(
            f"{cls} ops {SHORT[d]} {si(f, 'FLOP/s')}" + (f" ({cls} TF32 on)" if d == "tfloat32" else
                                                          " (TF32 off)" if cls != "other" else "")
            for cls, (f, d) in ceilings.items()))
    if spec.notes and (key in spec.notes or key not in spec.flop_per_s):
        notes.append(spec.notes)
    note = "; ".join(notes)
    common = dict(device_type="cuda", bytes_source="table", cache_bytes_per_s={"DRAM": spec.bytes_per_s})
    if key == "int8":
        ops = spec.int_op_per_s.get("int8")
        return Peak(spec.name, "int8", None, spec.bytes_per_s, "table" if ops else "unknown",
                    ("int8 figure is integer ops/s (TOPS), not FLOP/s; " if ops else "no int8 figure; ") + note,
                    int_op_per_s=ops, **common)
    flop = spec.flop_per_s.get(key)
    if flop is None:
        return _unknown_cuda(key, spec.name, f"no {key} figure for {spec.name}; " + note, spec.bytes_per_s)
    return Peak(spec.name, key, flop, spec.bytes_per_s, "table", note, op_ceilings=ceilings, **common)


def _cuda_ceilings(spec: specs.GpuSpec, dt: str, tf32: dict[str, bool]) -> dict[str, tuple[float, str]]:
    """Per op class ``(FLOP/s, dtype)``: TF32 for the classes whose TF32 flag is on (float32 runs
    on a GPU with TF32 tensor cores), the run's dtype rate otherwise. Empty when unknown."""
    base = spec.flop_per_s.get(dt)
    if base is None:
        return {}
    fast = spec.flop_per_s.get("tfloat32")
    return {cls: (fast, "tfloat32") if fast and tf32.get(cls) else (base, dt) for cls in OP_CLASSES}
