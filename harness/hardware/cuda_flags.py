"""The CUDA math flags that decide a float32 run's ceiling, read without raising.

torch 2.9+ has two APIs for TF32 (checked against torch 2.14's
``torch/backends/{__init__,cuda/__init__,cudnn/__init__}.py``):

* new: ``torch.backends.cuda.matmul.fp32_precision`` (cuBLAS), ``torch.backends.cudnn.conv.fp32_precision``
  (cuDNN convolutions), parents ``torch.backends.cudnn.fp32_precision`` and
  ``torch.backends.fp32_precision``; values ``"ieee"``, ``"tf32"`` or ``"none"`` (inherit; the
  leaf getters return the resolved value). Defaults in 2.14: matmul ``none`` (= IEEE), conv
  ``tf32``.
* legacy: ``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``,
  ``torch.get_float32_matmul_precision()``. Once a program has set the new API, reading
  these raises ``RuntimeError`` ("mix of the legacy and new APIs").

:func:`read_cuda_flags` reads the new API first and each value under its own guard, so
it never raises; what cannot be read is ``None``. The flags are process-wide and
readable on a CPU-only build (no GPU needed).
"""
from __future__ import annotations

import warnings

KEYS = ("matmul_fp32_precision", "conv_fp32_precision", "tf32_matmul", "tf32_conv", "cudnn_allow_tf32",
        "cudnn_benchmark", "cudnn_deterministic", "float32_matmul_precision")


def _read(getter):
    """``getter()``, or ``None`` when it raises (the legacy/new API mix, an older torch)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getter()
    except Exception:  # noqa: BLE001 - any failure to read a flag means "unknown"
        return None


def _tf32(new: str | None, *legacy) -> bool:
    """TF32 on: the new API's resolved value when it says ``tf32``/``ieee``; else the first
    legacy value that could be read (``True``, or matmul precision ``high``/``medium``)."""
    if new in ("tf32", "ieee"):
        return new == "tf32"
    for v in legacy:
        if v is not None:
            return v is True or v in ("high", "medium")
    return False


def read_cuda_flags() -> dict:
    """``{"matmul_fp32_precision", "conv_fp32_precision", "tf32_matmul": bool, "tf32_conv": bool,
    "cudnn_allow_tf32", "cudnn_benchmark", "cudnn_deterministic", "float32_matmul_precision"}``;
    ``None`` for a value that cannot be read. Never raises."""
    import torch

    b = torch.backends
    matmul = _read(lambda: b.cuda.matmul.fp32_precision)
    conv = _read(lambda: b.cudnn.conv.fp32_precision)
    cublas_allow = _read(lambda: b.cuda.matmul.allow_tf32)
    cudnn_allow = _read(lambda: b.cudnn.allow_tf32)
    precision = _read(torch.get_float32_matmul_precision)
    return {
        "matmul_fp32_precision": matmul,
        "conv_fp32_precision": conv,
        "tf32_matmul": _tf32(matmul, cublas_allow, precision),
        "tf32_conv": _tf32(conv, cudnn_allow),
        "cudnn_allow_tf32": cudnn_allow,
        "cudnn_benchmark": _read(lambda: b.cudnn.benchmark),
        "cudnn_deterministic": _read(lambda: b.cudnn.deterministic),
        "float32_matmul_precision": precision,
    }


def bf16_native(major: int, minor: int) -> bool:
    """bf16 tensor cores: compute capability 8.0 (Ampere) and later. Volta (7.0) and Turing
    (7.5) run bf16 only by emulation, which ``torch.cuda.is_bf16_supported()`` counts."""
    return (major, minor) >= (8, 0)


def cuda_bf16_supported(device_index: int) -> bool:
    """Whether CUDA device ``device_index`` (not the current device) has native bf16."""
    import torch

    return bf16_native(*torch.cuda.get_device_capability(device_index))
