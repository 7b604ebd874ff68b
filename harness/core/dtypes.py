"""Dtype names in one place: canonical names, the aliases users type, short labels.

Torch-free: :func:`torch_dtype` imports torch only when called.
"""
from __future__ import annotations

# names a run can execute in (``--dtype``)
RUN_DTYPES = ("float32", "bfloat16", "float16")

# every spelling users and torch use, to the canonical name; peaks know more kinds than runs
ALIASES = {
    "float64": "float64", "fp64": "float64", "f64": "float64", "double": "float64",
    "float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32", "single": "float32",
    "tfloat32": "tfloat32", "tf32": "tfloat32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
    "float8": "float8", "fp8": "float8", "float8_e4m3fn": "float8", "float8_e5m2": "float8",
    "float8_e4m3fnuz": "float8", "float8_e5m2fnuz": "float8", "e4m3": "float8", "e5m2": "float8",
    "int8": "int8", "qint8": "int8", "quint8": "int8", "uint8": "int8",
}

# short labels for tables and plots
SHORT = {"float64": "fp64", "float32": "fp32", "tfloat32": "tf32", "bfloat16": "bf16",
         "float16": "fp16", "float8": "fp8", "int8": "int8"}


def canonical(dtype) -> str | None:
    """``torch.bfloat16``, ``"bf16"``, ``"torch.bfloat16"`` -> ``"bfloat16"``; unknown -> None."""
    key = str(dtype).strip().lower().removeprefix("torch.")
    return ALIASES.get(key)


def short(dtype) -> str:
    """``"bfloat16"`` -> ``"bf16"``; unknown names pass through."""
    name = canonical(dtype) or str(dtype)
    return SHORT.get(name, name)


def name_of(dt) -> str:
    """``torch.float32`` -> ``"float32"`` (any torch dtype, canonical or not)."""
    return str(dt).replace("torch.", "")


def torch_dtype(name: str):
    """The torch dtype of a run dtype name (``"bf16"`` works too); None when not a run dtype."""
    import torch

    canon = canonical(name)
    return getattr(torch, canon) if canon in RUN_DTYPES else None
