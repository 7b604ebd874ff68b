"""The :class:`Peak` record - the ceilings for one device and dtype - and the op classes and
dtype names it is keyed by. :mod:`.peak` (``peak_for``) and :mod:`.cpu_peak` build it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..core import dtypes
from ..core.dtypes import SHORT
from ..errors import HarnessError
from ..core.units import si

__all__ = ["LEVELS", "MATMUL_OPS", "OP_CLASSES", "SOURCES", "Peak", "normalize_dtype", "op_class"]

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
