"""The one entry point: :func:`peak_for` - the ceilings a run is measured against."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..core import dtypes
from ..core.dtypes import SHORT
from ..errors import HarnessError
from ..core.units import si

from . import specs

SOURCES = ("table", "derived", "calibrated", "unknown")
LEVELS = ("L1", "L2", "L3", "DRAM")

# aten ops that run on tensor cores as GEMMs (cuBLAS / attention kernels) and as convolutions (cuDNN)
MATMUL_OPS = frozenset({"mm", "addmm", "bmm", "matmul", "linear", "baddbmm", "addbmm", "_addmm_activation",
                        "einsum", "scaled_dot_product_attention", "_grouped_mm"})
OP_CLASSES = ("matmul", "conv", "other")


def normalize_dtype(dtype) -> str:
    """``torch.bfloat16``, ``"bf16"``, ``"torch.bfloat16"`` -> ``"bfloat16"``; unknown -> HarnessError."""
    name = dtypes.canonical(dtype)
    if name is None:
        raise HarnessError(f"unknown dtype {dtype!r} for a peak; expected one of "
                           f"{', '.join(sorted(set(dtypes.ALIASES.values())))}")
    return name


def op_class(op_name: str) -> str:
    """``"conv"`` for ``aten::conv*`` / ``convolution`` / ``_convolution`` / ``cudnn_convolution*``,
    ``"matmul"`` for mm/addmm/bmm/matmul/linear/baddbmm/SDPA (every ``_scaled_dot_product_*``
    route)/``_grouped_mm``, else ``"other"``. The namespace and an overload (``.default``) are ignored."""
    name = op_name.rsplit("::", 1)[-1].split(".", 1)[0].lower()
    if name.startswith(("conv", "_conv", "cudnn_conv", "mkldnn_conv", "miopen_conv")):
        return "conv"
    if name in MATMUL_OPS or name.startswith("_scaled_dot_product_"):
        return "matmul"
    return "other"


@dataclass(frozen=True)
class Peak:
    """The ceilings for one device and dtype.

    ``flop_per_s`` is floating-point operations per second; ``None`` when unknown (never 0).
    For int8, ``flop_per_s`` is ``None`` and ``int_op_per_s`` holds the *integer* ops/s
    (TOPS): an int8 multiply-add is not a FLOP. ``dtype`` is the rate that applies: a
    float32 CUDA run whose matmuls or convolutions may use TF32 gets ``"tfloat32"`` (the
    highest ceiling of the run; :meth:`ceiling_for_op` gives each op's). ``source`` says where
    ``flop_per_s`` comes from: ``table`` (published spec), ``derived`` (formula from
    /proc/cpuinfo), ``calibrated`` (measured by ``harness calibrate``) or ``unknown``;
    ``bytes_source`` likewise for ``bytes_per_s``. ``note`` says how, in words.

    ``derived_flop_per_s``: the formula's figure beside a calibrated one (CPU), so a
    calibrated ceiling below it is never silent. ``cache_bytes_per_s`` holds only the levels
    that are known (``"L1"``, ``"L2"``, ``"L3"`` as calibrated, ``"DRAM"`` = ``bytes_per_s``);
    ``cache_sizes_bytes`` their capacity for the run's threads. ``op_ceilings`` maps
    ``"matmul"``/``"conv"``/``"other"`` to ``(flop_per_s, dtype)``. ``threads`` and
    ``calibration_file`` (the cache file used, CPU) feed :meth:`calibrate_hint`.
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
    derived_flop_per_s: float | None = None
    cache_bytes_per_s: dict = field(default_factory=dict)
    cache_sizes_bytes: dict = field(default_factory=dict)
    op_ceilings: dict = field(default_factory=dict)
    threads: int | None = None
    calibration_file: str | None = None

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

    def level_for(self, working_set_bytes: int) -> str:
        """The smallest level with a known bandwidth whose capacity for this run holds the working
        set: ``working_set_bytes <= cache_sizes_bytes[level]`` (size per instance x instances the
        run's cores use), checked L1, L2, L3; ``"DRAM"`` otherwise (and always when uncalibrated)."""
        for level in LEVELS[:-1]:
            size = self.cache_sizes_bytes.get(level)
            if level in self.cache_bytes_per_s and size and working_set_bytes <= size:
                return level
        return "DRAM"

    def bandwidth_for(self, working_set_bytes: int) -> tuple[float | None, str]:
        """``(bytes/s ceiling, level)`` for an op that touches ``working_set_bytes``."""
        level = self.level_for(working_set_bytes)
        return self.cache_bytes_per_s.get(level, self.bytes_per_s), level

    def ceiling_for_op(self, op_name: str) -> tuple[float | None, str]:
        """``(FLOP/s ceiling, label)`` for an aten op: on a float32 CUDA run, convolutions get the
        TF32 rate when cuDNN conv TF32 is on, matmul-class ops when cuBLAS TF32 is on; every
        other op (and every op on other runs) the run's dtype peak. See :func:`op_class`."""
        flop, dtype = self.op_ceilings.get(op_class(op_name), (self.flop_per_s, self.dtype))
        if flop is None:
            return None, "peak unknown"
        return flop, f"{si(flop, 'FLOP/s')} {SHORT.get(dtype, dtype)} ({self.source})"

    def calibrate_hint(self) -> str | None:
        """The command that calibrates this CPU peak's thread count; ``None`` when a calibration
        is in use (or for a GPU, whose figures come from the table)."""
        if self.device_type != "cpu" or self.calibration_file:
            return None
        return "python -m harness calibrate" + (f" --threads {self.threads}" if self.threads else "")

    def summary_fields(self) -> dict:
        """The summary.json fields: ``peak_flop_per_s``, ``peak_source``, ``mem_bandwidth_bytes_per_s``,
        ``peak_dtype``, ``peak_device``, ``peak_note`` (and ``peak_int_op_per_s`` for int8), plus
        ``peak_flop_per_s_derived``, ``cache_bytes_per_s``, ``cache_sizes_bytes`` and
        ``peak_op_ceilings`` (``{"matmul"|"conv"|"other": {"flop_per_s", "dtype"}}``)."""
        out = {
            "peak_flop_per_s": self.flop_per_s,
            "peak_source": self.source,
            "mem_bandwidth_bytes_per_s": self.bytes_per_s,
            "peak_dtype": self.dtype,
            "peak_device": self.name,
            "peak_note": self.note,
            "peak_flop_per_s_derived": self.derived_flop_per_s,
            "cache_bytes_per_s": dict(self.cache_bytes_per_s),
            "cache_sizes_bytes": dict(self.cache_sizes_bytes),
            "peak_op_ceilings": {k: {"flop_per_s": f, "dtype": d} for k, (f, d) in self.op_ceilings.items()},
        }
        if self.int_op_per_s is not None:
            out["peak_int_op_per_s"] = self.int_op_per_s
        return out

    def to_dict(self) -> dict:
        return asdict(self)


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
