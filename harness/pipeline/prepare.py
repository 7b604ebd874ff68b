"""Turn a scenario (or a user's model) into a model and inputs ready to time.

Resolves ``--device``/``--dtype``/``--threads`` with one-line errors for what this
machine cannot do, moves the model and the floating-point inputs, and sets eval mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import HarnessError
from . import scenario as scenario_mod

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available)."""
    text = str(device or "cpu").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise HarnessError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise HarnessError(f"device '{device}' is not supported; use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError("--device cuda was asked for but no CUDA GPU is available here; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise HarnessError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
    else:
        name = DTYPE_ALIASES.get(str(dtype or "float32").lower(), str(dtype or "float32").lower())
    if name not in DTYPES:
        raise HarnessError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    dt = DTYPES[name]
    if device.type == "cuda" and dt == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise HarnessError(f"this GPU ({torch.cuda.get_device_name(device)}) cannot run bfloat16; use --dtype float16 or float32")
    return dt


def dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def cast_inputs(inputs: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move tensors to ``device``; floating-point tensors also to ``dtype`` (token ids stay integers)."""
    if isinstance(inputs, torch.Tensor):
        t = inputs.to(device)
        return t.to(dtype) if t.is_floating_point() else t
    if isinstance(inputs, dict):
        return {k: cast_inputs(v, device, dtype) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(cast_inputs(v, device, dtype) for v in inputs)
    return inputs


def set_threads(threads: int | None) -> int:
    if threads is not None:
        if int(threads) < 1:
            raise HarnessError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def check_positive(name: str, value: int, minimum: int = 1) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise HarnessError(f"{name} must be a whole number, got {value!r}") from None
    if v < minimum:
        raise HarnessError(f"{name} must be at least {minimum}, got {v}")
    return v


@dataclass
class Prepared:
    """A model in eval mode on its device and dtype, and inputs to call it with."""

    name: str
    model: torch.nn.Module
    inputs: Any
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    threads: int


def prepare_model(model: torch.nn.Module, inputs: Any, *, name: str = "model", device: Any = "cpu",
                  dtype: Any = "float32", batch_size: int | None = None, threads: int | None = None) -> Prepared:
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    n_threads = set_threads(threads)
    model = model.to(device=dev, dtype=dt).eval()
    inputs = cast_inputs(inputs, dev, dt)
    if batch_size is None:
        first = inputs if isinstance(inputs, torch.Tensor) else next(
            (v for v in (inputs.values() if isinstance(inputs, dict) else inputs) if isinstance(v, torch.Tensor)), None)
        batch_size = int(first.shape[0]) if first is not None and first.dim() > 0 else 1
    return Prepared(name, model, inputs, dev, dt, int(batch_size), n_threads)


def prepare_scenario(sc: scenario_mod.Scenario, *, batch_size: int | None = None, device: Any = None,
                     dtype: Any = None, threads: int | None = None) -> Prepared:
    """Build the scenario's model and inputs on the resolved device and dtype.

    Arguments left as ``None`` take the scenario file's defaults.
    """
    bs = check_positive("--batch-size", batch_size if batch_size is not None else sc.batch_size)
    dev = resolve_device(device if device is not None else sc.device)
    dt = resolve_dtype(dtype if dtype is not None else sc.dtype, dev)
    model = scenario_mod.build(sc)
    raw = scenario_mod.inputs(sc, bs, dev)
    return prepare_model(model, raw, name=sc.name, device=dev, dtype=dt, batch_size=bs, threads=threads)
